import json

import pytest

from creditzoo.tasks import get_task
from creditzoo.tasks.prompts import (
    UNTAGGED,
    PromptSet,
    load_prompt_set,
    parse_prompt_files,
    read_prompt_file,
    with_prompt_set,
)

GENEVAL_LINES = [
    {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
    {
        "tag": "counting",
        "include": [{"class": "clock", "count": 3}],
        "exclude": [{"class": "clock", "count": 4}],
        "prompt": "a photo of three clocks",
    },
    {
        "tag": "position",
        "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}],
        "prompt": "a photo of a dog right of a cat",
    },
    {
        "tag": "color_attr",
        "include": [{"class": "car", "count": 1, "color": "red"}, {"class": "vase", "count": 1, "color": "blue"}],
        "prompt": "a photo of a red car and a blue vase",
    },
]


def write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_plain_text_skips_blank_and_comment_lines(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text('# header\n\n  A sign that says "Open"  \n   # indented comment\nA cake with "Hi"\n\n')
    records = read_prompt_file(path)
    assert [r.prompt for r in records] == ['A sign that says "Open"', 'A cake with "Hi"']
    assert all(r.tag is None and r.metadata is None for r in records)


def test_geneval_jsonl_keeps_tags_and_whole_metadata(tmp_path):
    train = write_jsonl(tmp_path / "train_metadata.jsonl", GENEVAL_LINES[:3])
    test = write_jsonl(tmp_path / "test_metadata.jsonl", GENEVAL_LINES[3:])
    prompts = load_prompt_set(train, test)
    assert prompts.train == ("a photo of a bench", "a photo of three clocks", "a photo of a dog right of a cat")
    assert prompts.test == ("a photo of a red car and a blue vase",)
    assert prompts.category("a photo of three clocks") == "counting"
    assert prompts.categories == ("color_attr",)
    # the record is kept whole, including keys the loader does not check (exclude)
    assert prompts.metadata["a photo of three clocks"]["exclude"] == [{"class": "clock", "count": 4}]
    assert dict(prompts.metadata["a photo of a dog right of a cat"]) == GENEVAL_LINES[2]


def test_plain_text_prompts_are_untagged(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.txt").write_text("three\n")
    prompts = load_prompt_set(tmp_path / "a.txt", tmp_path / "b.txt")
    assert prompts.category("one") == UNTAGGED
    assert prompts.metadata == {}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"tag": "colors", "include": [{"class": "car", "count": 1}]}', "'prompt'"),
        ('{"prompt": "a car", "include": [{"class": "car", "count": 1}]}', "'tag'"),
        ('{"prompt": "a car", "tag": "colors"}', "'include'"),
        ('{"prompt": "a car", "tag": "colors", "include": []}', "'include'"),
        ('{"prompt": "a car", "tag": "colors", "include": [{"count": 1}]}', "'class'"),
        ('{"prompt": "a car", "tag": "colors", "include": [{"class": "car", "count": 0}]}', "'count'"),
        ('{"prompt": "a car", "tag": "colors", "include": [{"class": "car", "count": true}]}', "'count'"),
        ('{"prompt": "a car", "tag": "c", "include": [{"class": "car", "count": 1, "color": 3}]}', "'color'"),
        (
            '{"prompt": "p", "tag": "position", "include": [{"class": "a", "count": 1, "position": ["left of", 0]}]}',
            "'position'",
        ),
        (
            '{"prompt": "p", "tag": "position", "include": [{"class": "a", "count": 1}, '
            '{"class": "b", "count": 1, "position": ["beside", 0]}]}',
            "'position'",
        ),
    ],
)
def test_bad_jsonl_line_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "meta.jsonl"
    good = json.dumps(GENEVAL_LINES[0])
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(ValueError) as error:
        read_prompt_file(path)
    message = str(error.value)
    assert f"{path}:3:" in message
    assert problem in message
    assert "\n" not in message


def test_missing_empty_and_binary_files_fail_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_prompt_file(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match="holds no prompts"):
        read_prompt_file(tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_prompt_file(tmp_path / "bin.txt")
    with pytest.raises(ValueError, match="is a directory"):
        read_prompt_file(tmp_path)


def test_conflicting_tags_between_files_fail(tmp_path):
    other = dict(GENEVAL_LINES[0], tag="colors")
    train = write_jsonl(tmp_path / "train.jsonl", [GENEVAL_LINES[0]])
    test = write_jsonl(tmp_path / "test.jsonl", [other])
    with pytest.raises(ValueError, match="different tags or metadata"):
        load_prompt_set(train, test)


def test_prompt_set_needs_both_splits():
    with pytest.raises(ValueError, match="train prompt"):
        PromptSet(train=(), test=("a",))
    with pytest.raises(ValueError, match="test prompt"):
        PromptSet(train=("a",), test=())


def test_parse_prompt_files():
    train, test = parse_prompt_files("data/train.txt, data/test.txt")
    assert (str(train), str(test)) == ("data/train.txt", "data/test.txt")
    for bad in ("only.txt", "a,b,c", ",b"):
        with pytest.raises(ValueError, match="TRAIN_FILE,TEST_FILE"):
            parse_prompt_files(bad)


def test_with_prompt_set_replaces_prompts_and_categories_only(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", GENEVAL_LINES[:2])
    test = write_jsonl(tmp_path / "test.jsonl", GENEVAL_LINES[2:])
    base = get_task("geneval")
    task = with_prompt_set(base, load_prompt_set(train, test))
    assert task.train_prompts() == ["a photo of a bench", "a photo of three clocks"]
    assert task.test_prompts() == ["a photo of a dog right of a cat", "a photo of a red car and a blue vase"]
    assert task.category("a photo of a dog right of a cat") == "position"
    assert task.score is base.score and task.rewards == base.rewards
    assert base.train_prompts() != task.train_prompts()  # the registered task is untouched
