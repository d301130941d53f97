"""Prompt sets read from files: plain text or GenEval's metadata JSONL, with a train/test split of two files.

Two formats, told apart by the file name's ending:

* **Plain text** (any ending but ``.jsonl``): one prompt a line; blank lines and lines whose first non-blank
  character is ``#`` are skipped; surrounding whitespace is stripped. Flow-GRPO's ``ocr`` and ``pickscore``
  prompt sets (``train.txt`` / ``test.txt``) are in this format.
* **GenEval metadata** (``.jsonl``): one JSON object a line, as GenEval's ``evaluation_metadata.jsonl``
  (Ghosh et al., "GenEval: An Object-Focused Framework for Evaluating Text-to-Image Alignment", NeurIPS 2023)
  and Flow-GRPO's ``train_metadata.jsonl`` / ``test_metadata.jsonl`` write them::

      {"tag": "position", "prompt": "a photo of a dog right of a cat",
       "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}]}

  ``prompt`` (a non-empty string), ``tag`` (the category, a non-empty string) and ``include`` (a non-empty
  list of objects, each with ``class``: str and ``count``: int >= 1, optionally ``color``: str and
  ``position``: [relation, index of an earlier ``include`` entry]) are checked; ``exclude`` and any other
  keys pass through untouched in :attr:`PromptSet.metadata` (a GenEval reward server reads them).

Rewards and scorers that need each prompt's metadata (the GenEval reward server does) cannot score from the
prompt text alone. Such an object defines ``for_prompts(prompt_set) -> callable``; :func:`with_prompt_set`
binds every reward of the task, and its scorer, that has one (the others are kept as they are).

A file that breaks its format raises a one-line ``ValueError`` naming the file and the line. The same prompt
may appear more than once in a file (a file's repeats weight sampling); a prompt whose tag or metadata
differs between two lines is an error.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from creditzoo.registry import load_object
from creditzoo.tasks import Task

UNTAGGED = "all"
"""Category of a prompt that has no tag (every prompt of a plain-text file)."""

GENEVAL_RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
"""The relations GenEval's ``position`` entries use."""


@dataclass(frozen=True)
class PromptSet:
    """Train and test prompts, with a category (tag) and optional metadata per prompt.

    Attributes:
        train: prompts RL training draws from, in file order (repeats kept).
        test: held-out evaluation prompts, in file order (repeats kept).
        tags: prompt -> category; prompts without a tag are absent (their category is ``UNTAGGED``).
        metadata: prompt -> its GenEval metadata record (the whole JSON object of its line); empty for plain
            text.
    """

    train: tuple[str, ...]
    test: tuple[str, ...]
    tags: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("a prompt set needs at least one train prompt")
        if not self.test:
            raise ValueError("a prompt set needs at least one test prompt")
        object.__setattr__(self, "train", tuple(self.train))
        object.__setattr__(self, "test", tuple(self.test))
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    def category(self, prompt: str) -> str:
        """The prompt's tag, or ``UNTAGGED``."""
        return self.tags.get(prompt, UNTAGGED)

    @property
    def categories(self) -> tuple[str, ...]:
        """Distinct categories of the test prompts, in first-seen order."""
        return tuple(dict.fromkeys(self.category(p) for p in self.test))


@dataclass(frozen=True)
class PromptRecord:
    """One prompt read from a file.

    Attributes:
        prompt: the text to condition on.
        tag: its category, or None (plain text).
        metadata: the GenEval record of a JSONL line, or None (plain text).
    """

    prompt: str
    tag: str | None = None
    metadata: Mapping[str, Any] | None = None


def _bad(path: Path, line: int, problem: str) -> ValueError:
    return ValueError(f"{path}:{line}: {problem}")


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ValueError(f"prompt file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"prompt file {str(path)!r} is a directory") from None
    except UnicodeDecodeError as error:
        raise ValueError(
            f"prompt file {str(path)!r} is not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None


def _check_include(path: Path, number: int, include: object) -> None:
    if not isinstance(include, list) or not include:
        raise _bad(path, number, "'include' must be a non-empty list of objects")
    for index, entry in enumerate(include):
        where = f"include[{index}]"
        if not isinstance(entry, dict):
            raise _bad(path, number, f"{where} must be an object with 'class' and 'count'")
        if not isinstance(entry.get("class"), str) or not entry["class"]:
            raise _bad(path, number, f"{where} needs a non-empty string 'class'")
        count = entry.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise _bad(path, number, f"{where} needs an integer 'count' >= 1, got {count!r}")
        if "color" in entry and (not isinstance(entry["color"], str) or not entry["color"]):
            raise _bad(path, number, f"{where}: 'color' must be a non-empty string, got {entry['color']!r}")
        if "position" in entry:
            position = entry["position"]
            valid = (
                isinstance(position, (list, tuple))
                and len(position) == 2
                and position[0] in GENEVAL_RELATIONS
                and isinstance(position[1], int)
                and not isinstance(position[1], bool)
                and 0 <= position[1] < index
            )
            if not valid:
                raise _bad(
                    path,
                    number,
                    f"{where}: 'position' must be [relation, index of an earlier include entry] with relation one "
                    f"of {', '.join(GENEVAL_RELATIONS)}; got {position!r}",
                )


def _parse_jsonl_line(path: Path, number: int, text: str) -> PromptRecord:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise _bad(path, number, f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise _bad(path, number, f"expected a JSON object, got {type(record).__name__}")
    for key in ("prompt", "tag"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise _bad(path, number, f"missing or empty string {key!r} (GenEval metadata needs prompt, tag, include)")
    _check_include(path, number, record.get("include"))
    return PromptRecord(prompt=record["prompt"].strip(), tag=record["tag"], metadata=MappingProxyType(record))


def read_prompt_file(path: str | Path) -> list[PromptRecord]:
    """Read one prompt file (plain text, or GenEval metadata when the name ends in ``.jsonl``).

    Args:
        path: the file.

    Returns:
        One record per prompt line, in file order.

    Raises:
        ValueError: one line naming the file (and line) when the file is missing, unreadable, empty of prompts,
            or a line breaks the format.
    """
    path = Path(path)
    lines = _read_lines(path)
    records = []
    jsonl = path.name.endswith(".jsonl")
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or (not jsonl and text.startswith("#")):
            continue
        records.append(_parse_jsonl_line(path, number, text) if jsonl else PromptRecord(prompt=text))
    if not records:
        raise ValueError(f"prompt file {str(path)!r} holds no prompts")
    return records


def _index(records: Sequence[tuple[Path, PromptRecord]]) -> tuple[dict[str, str], dict[str, Mapping[str, Any]]]:
    """Tags and metadata per prompt; a prompt must carry the same tag and metadata everywhere."""
    tags: dict[str, str] = {}
    metadata: dict[str, Mapping[str, Any]] = {}
    origin: dict[str, Path] = {}
    for path, record in records:
        prompt = record.prompt
        if prompt in origin and (tags.get(prompt) != record.tag or metadata.get(prompt) != record.metadata):
            raise ValueError(
                f"prompt {prompt!r} appears in {origin[prompt]} and {path} with different tags or metadata"
            )
        origin.setdefault(prompt, path)
        if record.tag is not None:
            tags[prompt] = record.tag
        if record.metadata is not None:
            metadata[prompt] = record.metadata
    return tags, metadata


def load_prompt_set(train_path: str | Path, test_path: str | Path) -> PromptSet:
    """Read a train/test split given as two prompt files (see :func:`read_prompt_file` for the formats).

    Args:
        train_path: the training prompts.
        test_path: the held-out evaluation prompts.

    Returns:
        :class:`PromptSet` with tags (and metadata) from GenEval JSONL files.

    Raises:
        ValueError: a bad file (see :func:`read_prompt_file`), or a prompt given different tags or metadata.
    """
    train = [(Path(train_path), r) for r in read_prompt_file(train_path)]
    test = [(Path(test_path), r) for r in read_prompt_file(test_path)]
    tags, metadata = _index(train + test)
    return PromptSet(
        train=tuple(r.prompt for _, r in train),
        test=tuple(r.prompt for _, r in test),
        tags=tags,
        metadata=metadata,
    )


def parse_prompt_files(spec: str) -> tuple[Path, Path]:
    """Split ``"TRAIN_FILE,TEST_FILE"`` (the command line's form) into two paths.

    Raises:
        ValueError: unless ``spec`` holds exactly two non-empty comma-separated paths.
    """
    parts = [part.strip() for part in spec.split(",")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"prompt files must be given as TRAIN_FILE,TEST_FILE, got {spec!r}")
    return Path(parts[0]), Path(parts[1])


def with_prompt_set(task: Task, prompts: PromptSet) -> Task:
    """The same task drawing its train and test prompts (and categories) from ``prompts``.

    Evaluation reports one category per tag of ``prompts`` (a single ``UNTAGGED`` category for plain-text
    files). Rewards and the scorer are kept, except those defining ``for_prompts(prompt_set)``, which are
    replaced by what it returns (bound to the prompts' metadata).

    Raises:
        ValueError: from a ``for_prompts`` that cannot bind (e.g. plain-text prompts where metadata is needed).
    """
    rewards = {}
    for name, value in task.rewards.items():
        reward = load_object(value) if isinstance(value, str) and ":" in value else value
        rewards[name] = reward.for_prompts(prompts) if hasattr(reward, "for_prompts") else value
    score = task.score.for_prompts(prompts) if hasattr(task.score, "for_prompts") else task.score
    return dataclasses.replace(
        task,
        train_prompts=_constant(list(prompts.train)),
        test_prompts=_constant(list(prompts.test)),
        category=prompts.category,
        rewards=rewards,
        score=score,
    )


def task_with_prompt_files(task: Task, spec: str) -> Task:
    """``task`` drawing its prompts from the files of ``spec`` (``"TRAIN_FILE,TEST_FILE"``, the command line's form).

    Raises:
        ValueError: a malformed ``spec`` or a missing or malformed file (one line naming the file and line).
    """
    return with_prompt_set(task, load_prompt_set(*parse_prompt_files(spec)))


def _constant(values: list[str]) -> Callable[[], list[str]]:
    def get() -> list[str]:
        return list(values)

    return get
