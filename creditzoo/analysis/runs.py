"""Reading run directories and sweep directories written by ``creditzoo train`` / ``creditzoo sweep``.

A run directory holds ``config.json`` (the resolved TrainConfig), ``metrics.jsonl`` (one JSON object per
iteration, iteration 0 being the base model's evaluation) and ``eval/iter_*.json`` / ``eval/final.json`` (test
scores per category). A sweep directory holds ``manifest.json`` listing its runs
(``{"runs": [{"name", "dir", "algo", "seed", "config", "status"}], "grid": {...}}``); a plain directory whose
immediate subdirectories hold ``config.json`` is read as a sweep too.

Every reader fails with a one-line :class:`ValueError` naming the file (and line) it could not use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from creditzoo.tasks import Metric, Task

RUN_MARKER = "config.json"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class RunData:
    """What one run directory recorded, in the form the studies need.

    Attributes:
        path: the run directory.
        config: the resolved configuration (``config.json``).
        metrics: the metrics lines, in order (iteration 0 is the base evaluation).
        categories: per-category final test scores, ``{category: {metric mean: value}}`` (e.g. GenEval's
            ``partial_score``; empty when the run has no evaluation file).
        provenance: ``config.json``'s ``"provenance"`` (commit, versions, machine; :mod:`creditzoo.provenance`),
            kept apart from ``config`` so that it never splits a group; None for runs that did not record it.
    """

    path: Path
    config: dict
    metrics: list[dict]
    categories: dict[str, dict[str, float]] = field(default_factory=dict)
    provenance: dict | None = None

    @property
    def name(self) -> str:
        """The directory name."""
        return self.path.name

    @property
    def finished(self) -> bool:
        """Whether the run recorded its last configured iteration (an interrupted run has not)."""
        return self.metrics[-1]["iteration"] >= int(self.config.get("iterations", 0))

    def iterations(self) -> np.ndarray:
        """Iteration number of every metrics line, int [L]."""
        return np.array([int(line["iteration"]) for line in self.metrics])

    def cumulative(self, key: str) -> np.ndarray:
        """Cumulative model evaluations (``"model_evals"``) or seconds (``"seconds"``) after each line, float [L]."""
        if key == "seconds":
            values = [float(line.get("seconds", {}).get("total", 0.0)) for line in self.metrics]
        else:
            values = [float(line.get(key, 0) or 0) for line in self.metrics]
        return np.cumsum(values)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Iterations [M] and values [M] of the lines that carry ``key`` (e.g. ``test_partial_score``)."""
        rows = [(int(line["iteration"]), float(line[key])) for line in self.metrics if line.get(key) is not None]
        if not rows:
            return np.zeros(0, dtype=int), np.zeros(0)
        its, values = zip(*rows, strict=True)
        return np.array(its), np.array(values)


def run_task(runs: list[RunData]) -> Task:
    """The task the runs were trained on (their ``config.json``'s env): it declares their test metrics.

    Raises:
        ValueError: no runs, runs of several environments, or an environment that is not registered (listing the
            registered ones).
    """
    from creditzoo.tasks import get_task

    envs = list(dict.fromkeys(str(run.config.get("env")) for run in runs))
    if len(envs) != 1:
        raise ValueError(f"runs of {len(envs)} environments ({', '.join(envs)}); their metrics need one")
    return get_task(envs[0])


def task_metrics(runs: list[RunData]) -> dict[str, Metric]:
    """The runs' test metrics, in their task's order: metrics-line key (``test_partial_score``) -> :class:`Metric`.

    Raises:
        ValueError: as :func:`run_task`.
    """
    return {metric.test_key: metric for metric in run_task(runs).metrics}


def _require_run_dir(path: Path) -> None:
    if not path.exists():
        raise ValueError(f"run directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise ValueError(f"{str(path)!r} is not a directory")
    if not (path / RUN_MARKER).exists():
        what = "is empty" if not any(path.iterdir()) else f"has no {RUN_MARKER}"
        raise ValueError(f"{str(path)!r} is not a run directory: it {what}")


def read_config(run_dir: str | Path) -> dict:
    """The run's ``config.json`` as a dict.

    Raises:
        ValueError: missing or empty directory, or a config that is not a JSON object.
    """
    path = Path(run_dir)
    _require_run_dir(path)
    try:
        config = json.loads((path / RUN_MARKER).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(path / RUN_MARKER)!r} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{str(path / RUN_MARKER)!r} does not hold a JSON object")
    return config


def read_metrics_checked(run_dir: str | Path) -> list[dict]:
    """Every metrics line of a run, each checked to be a JSON object with an ``iteration``.

    Raises:
        ValueError: no ``metrics.jsonl``, no lines, or a corrupt / truncated line (naming file and line number).
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist (the run has not started)")
    lines = []
    for number, text in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: corrupt or truncated metrics line ({error.msg})") from None
        if not isinstance(line, dict) or not isinstance(line.get("iteration"), int):
            raise ValueError(f"{path}:{number}: metrics line is not an object with an integer 'iteration'")
        lines.append(line)
    if not lines:
        raise ValueError(f"{str(path)!r} is empty")
    return lines


def read_categories(run_dir: str | Path) -> dict[str, dict[str, float]]:
    """Per-category scores of the run's last evaluation (``eval/final.json``, else the newest ``eval/iter_*``)."""
    root = Path(run_dir) / "eval"
    candidates = [root / "final.json"] if (root / "final.json").exists() else sorted(root.glob("iter_*.json"))[-1:]
    if not candidates:
        return {}
    try:
        summary = json.loads(candidates[0].read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(candidates[0])!r} is not valid JSON: {error}") from None
    if isinstance(summary, dict) and isinstance(summary.get("summary"), dict):  # per-image format (final.json)
        summary = summary["summary"]
    per_category = summary.get("per_category", {}) if isinstance(summary, dict) else {}
    return {name: dict(scores) for name, scores in per_category.items() if isinstance(scores, dict)}


def load_run(run_dir: str | Path) -> RunData:
    """Read one run directory (config, metrics, final per-category scores)."""
    path = Path(run_dir)
    config = read_config(path)
    provenance = config.pop("provenance", None)
    return RunData(
        path=path,
        config=config,
        metrics=read_metrics_checked(path),
        categories=read_categories(path),
        provenance=provenance if isinstance(provenance, dict) else None,
    )


def sweep_run_dirs(directory: str | Path) -> list[Path]:
    """The run directories of a sweep: those listed in ``manifest.json``, else the subdirectories with a config.

    Runs a manifest lists as ``pending`` or ``failed``, or whose directory holds no ``config.json`` yet, are
    skipped; an unfinished (``running``) run is read as far as it got.

    Raises:
        ValueError: unreadable manifest, or no run directory found.
    """
    root = Path(directory)
    manifest = root / MANIFEST
    if manifest.exists():
        try:
            runs = json.loads(manifest.read_text())["runs"]
            listed = [(root / entry["dir"], entry.get("status", "finished")) for entry in runs]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{str(manifest)!r} is not a sweep manifest ({type(error).__name__}: {error})") from None
        found = [
            path for path, status in listed if status not in ("pending", "failed") and (path / RUN_MARKER).exists()
        ]
    else:
        found = sorted(p for p in root.iterdir() if p.is_dir() and (p / RUN_MARKER).exists()) if root.is_dir() else []
    if not found:
        raise ValueError(f"{str(root)!r} holds no run directories (no {MANIFEST}, no subdirectory with {RUN_MARKER})")
    return found


def expand_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Run directories named directly, or found inside sweep directories, in the order given.

    Raises:
        ValueError: a path that does not exist or holds neither a run nor a sweep.
    """
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if not path.exists():
            raise ValueError(f"run directory {str(path)!r} does not exist")
        if not path.is_dir():
            raise ValueError(f"{str(path)!r} is not a directory")
        if (path / RUN_MARKER).exists():
            found.append(path)
        elif not any(path.iterdir()):
            raise ValueError(f"{str(path)!r} is empty: neither a run directory nor a sweep directory")
        else:
            found.extend(sweep_run_dirs(path))
    return found


def is_sweep(path: str | Path) -> bool:
    """Whether ``path`` is a sweep directory rather than one run directory."""
    path = Path(path)
    return path.is_dir() and not (path / RUN_MARKER).exists() and any(path.iterdir())


def default_out_dir(inputs: list[str | Path]) -> Path:
    """Where a command writes without ``--out``: ``analysis/`` in its one input, else in the inputs' common parent."""
    paths = [Path(p).resolve() for p in inputs]
    if len(paths) == 1:
        return paths[0] / "analysis"
    common = Path(*Path(paths[0]).parts[: _common_prefix([p.parts for p in paths])])
    return common / "analysis"


def _common_prefix(parts: list[tuple[str, ...]]) -> int:
    length = 0
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        length += 1
    return length


def split_finished(runs: list[RunData]) -> tuple[list[RunData], list[str]]:
    """The finished runs, and a note for each unfinished one (its final scores would not be final).

    Raises:
        ValueError: no run is finished.
    """
    finished = [run for run in runs if run.finished]
    notes = [
        f"{run.path}: unfinished (iteration {run.metrics[-1]['iteration']} of {run.config.get('iterations')}), left out"
        for run in runs
        if not run.finished
    ]
    if not finished:
        raise ValueError(f"none of the {len(runs)} runs has finished; first: {notes[0]}")
    return finished, notes
