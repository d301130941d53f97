"""`creditzoo train --prompts TRAIN,TEST`: the run draws from the user's files; bad files fail in one line."""

import json

import pytest
from tiny_model import TRAIN_ARGS
from typer.testing import CliRunner

from creditzoo.cli import app
from creditzoo.learner.checkpoint import read_metrics
from creditzoo.learner.config import TrainConfig

runner = CliRunner()
TINY = [*TRAIN_ARGS, *["--eval-samples-per-prompt", "1", "--eval-min-images-per-category", "1", "--iterations", "2"]]
TINY += ["--eval-steps", "2"]


pytestmark = pytest.mark.usefixtures("tiny_task")


def write_files(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("# my prompts\nan orange moon\n\na purple star\n")
    test = tmp_path / "test.jsonl"
    lines = [
        {"prompt": "a red moon", "tag": "colors", "include": [{"class": "moon", "count": 1, "color": "red"}]},
        {"prompt": "two stars", "tag": "counting", "include": [{"class": "star", "count": 2}]},
    ]
    test.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return train, test


def test_a_run_trains_and_evaluates_on_the_given_files(tmp_path):
    train, test = write_files(tmp_path)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--prompts", f"{train},{test}", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["prompts"] == f"{train},{test}"
    from safetensors import safe_open

    for iteration in (1, 2):
        with safe_open(str(run / "rollouts" / f"iter_{iteration:06d}.safetensors"), "pt") as record:
            prompts = set(json.loads(record.metadata()["prompts"]))
        assert prompts == {"an orange moon", "a purple star"}  # both groups, from the train file only
    final = json.loads((run / "eval" / "final.json").read_text())
    assert set(final["summary"]["per_category"]) == {"colors", "counting"}  # the JSONL tags are the categories
    assert len(read_metrics(run)) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "a moon", "tag": "colors", "include": []}\n', "test.jsonl:1: 'include' must be"),
        ("not json\n", "test.jsonl:1: not valid JSON"),
    ],
)
def test_a_bad_prompt_file_is_one_line_and_exit_code_2(tmp_path, content, message):
    train, test = write_files(tmp_path)
    test.write_text(content)
    result = runner.invoke(app, ["train", *TINY, "--prompts", f"{train},{test}", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


def test_missing_file_and_bad_form_fail_early(tmp_path):
    train, _ = write_files(tmp_path)
    result = runner.invoke(app, ["train", *TINY, "--prompts", f"{train},{tmp_path / 'nope.txt'}"])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["train", *TINY, "--prompts", str(train)])
    assert result.exit_code == 2 and "TRAIN_FILE,TEST_FILE" in result.output
    with pytest.raises(ValueError, match="TRAIN_FILE,TEST_FILE"):
        TrainConfig(prompts="one-file-only.txt")


@pytest.mark.parametrize("task", ["ocr", "pickscore"])
def test_tasks_without_a_default_model_ask_for_one_in_one_line(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --run-dir (runs/...) is relative to here
    result = runner.invoke(app, ["train", "--env", task, "--iterations", "1"])
    assert result.exit_code == 2
    assert f"task {task!r} has no default model; give one with --model sd3:" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # refused after the run directory's lock was taken: nothing stays
