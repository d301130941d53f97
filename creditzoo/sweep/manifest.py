"""A sweep's manifest: its runs and their statuses, read and written atomically, and a directory prepared.

``manifest.json`` holds ``{"runs": [{"name", "dir", "algo", "seed", "config", "status"}, ...], "grid": {field:
[values, ...]}, "created": ISO time, "provenance": {...}}``; the files on disk decide whether a run is finished.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creditzoo.learner.checkpoint import atomic_write_json, read_metrics
from creditzoo.learner.config import TrainConfig, stored_values

STATUSES = ("pending", "running", "finished", "failed")
MANIFEST = "manifest.json"
NOT_A_CHOICE = ("device", "log")
"""Fields a reopened sweep may change: they do not change what a run computes (on the same device kind)."""


class SweepError(ValueError):
    """The sweep cannot be set up or resumed as asked (bad grid, a directory that holds another sweep)."""


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep.

    Attributes:
        name: unique name, also its directory below the sweep directory, e.g. ``tp_grpo-window_size=3-seed0``.
        algo: the credit-assignment algorithm.
        seed: the run seed.
        config: the full, resolved training configuration.
        status: one of :data:`STATUSES`.
    """

    name: str
    algo: str
    seed: int
    config: TrainConfig
    status: str = "pending"

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown run status {self.status!r}; valid: {', '.join(STATUSES)}")

    def to_dict(self) -> dict[str, Any]:
        """The run's manifest entry."""
        return {
            "name": self.name,
            "dir": self.name,
            "algo": self.algo,
            "seed": self.seed,
            "config": self.config.to_dict(),
            "status": self.status,
        }


@dataclass(frozen=True)
class Sweep:
    """A sweep directory's manifest: its runs, the grid they span, when it was created and by what.

    ``provenance`` is :func:`creditzoo.provenance.collect` of the process that created the sweep, with one record
    per reopening in ``"resumes"`` (None in manifests written before provenance was recorded).
    """

    runs: tuple[SweepRun, ...]
    grid: dict[str, list[Any]]
    created: str
    provenance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready manifest."""
        manifest = {"runs": [run.to_dict() for run in self.runs], "grid": self.grid, "created": self.created}
        return manifest if self.provenance is None else {**manifest, "provenance": self.provenance}

    def run(self, name: str) -> SweepRun:
        """The run called ``name``."""
        for run in self.runs:
            if run.name == name:
                return run
        raise SweepError(f"no run {name!r} in the sweep; runs: {', '.join(r.name for r in self.runs)}")

    def with_status(self, name: str, status: str) -> Sweep:
        """A copy with the status of run ``name`` replaced."""
        runs = tuple(dataclasses.replace(r, status=status) if r.name == name else r for r in self.runs)
        return dataclasses.replace(self, runs=runs)


def read_manifest(out: str | Path) -> Sweep | None:
    """The manifest of sweep directory ``out``, or None when there is none.

    Raises:
        SweepError: for a manifest that does not parse, naming the file.
    """
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        runs = tuple(
            SweepRun(
                name=entry["name"],
                algo=entry["algo"],
                seed=int(entry["seed"]),
                config=TrainConfig.from_dict(stored_values(entry["config"])),  # an older manifest as it trained
                status=entry["status"],
            )
            for entry in data["runs"]
        )
        provenance = data.get("provenance")
        return Sweep(
            runs=runs,
            grid=dict(data["grid"]),
            created=str(data["created"]),
            provenance=provenance if isinstance(provenance, dict) else None,
        )
    except (ValueError, KeyError, TypeError) as error:
        raise SweepError(f"{str(path)!r} is not a sweep manifest ({error})") from error


def write_manifest(out: str | Path, sweep: Sweep) -> None:
    """Write ``out/manifest.json`` atomically."""
    atomic_write_json(Path(out) / MANIFEST, sweep.to_dict())


def run_status(run_dir: Path, config: TrainConfig) -> str:
    """The status on disk: finished (the last metrics line there, and the final adapter or final evaluation) or pending.

    Either the final adapter or the final evaluation's ``eval/final.json`` of the last iteration marks a run as
    done, beside its last metrics line; the optimizer state does not. A study may so keep (commit) only what its
    analysis reads (config, metrics, evaluation records; studies/README.md), and a fresh clone's rerun of the
    sweep still skips the run instead of training it again.
    """
    try:
        lines = read_metrics(run_dir)
    except (OSError, ValueError):  # missing, or a truncated line: the run did not end cleanly
        return "pending"
    if not lines or lines[-1].get("iteration") != config.iterations:
        return "pending"
    adapter = run_dir / "checkpoints" / f"iter_{config.iterations:06d}" / "adapter_model.safetensors"
    return "finished" if adapter.exists() or _final_evaluation_iteration(run_dir) == config.iterations else "pending"


def _final_evaluation_iteration(run_dir: Path) -> int | None:
    """The iteration ``eval/final.json`` evaluated, or None when it is missing or unreadable."""
    try:
        record = json.loads((run_dir / "eval" / "final.json").read_text())
    except (OSError, ValueError):
        return None
    iteration = record.get("iteration") if isinstance(record, dict) else None
    return iteration if isinstance(iteration, int) else None


def prepare(out: str | Path, runs: Sequence[SweepRun], grid: dict[str, list[Any]]) -> Sweep:
    """Create or reopen the sweep directory ``out`` for ``runs`` and write its manifest.

    A reopened sweep must have the same grid, and a run it already holds the same configuration; runs it holds
    that are not asked for now stay in the manifest. Each run's status is read from its directory.

    Raises:
        SweepError: for a different grid, a changed run configuration, or a run directory holding another run.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SweepError(f"sweep directory {str(out)!r} exists and is not a directory")
    old = read_manifest(out)
    known: dict[str, SweepRun] = {}
    if old is not None:
        if json.loads(json.dumps(grid)) != old.grid:
            raise SweepError(
                f"{str(out)!r} holds a sweep over grid {json.dumps(old.grid)}, not {json.dumps(grid)}; "
                "use another --out or the same grid"
            )
        known = {run.name: run for run in old.runs}
    elif out.exists() and any(out.iterdir()):
        raise SweepError(f"{str(out)!r} exists and holds no {MANIFEST}; a sweep starts in a new or empty directory")
    for run in runs:
        if run.name in known and _choices(known[run.name].config) != _choices(run.config):
            raise SweepError(
                f"run {run.name!r} exists with another configuration ({_difference(known[run.name], run)})"
            )
        stored = out / run.name / "config.json"
        if run.name not in known and stored.exists():
            raise SweepError(f"{str(stored.parent)!r} holds a run the manifest does not know; remove it or use --out")
    merged = dict(known)
    for run in runs:  # the new entry: it may track differently or run on another device
        merged[run.name] = dataclasses.replace(run, status=known[run.name].status) if run.name in known else run
    statuses = {name: run_status(out / name, run.config) for name, run in merged.items()}
    sweep = Sweep(
        runs=tuple(
            dataclasses.replace(run, status="finished" if statuses[name] == "finished" else _reopened(run.status))
            for name, run in merged.items()
        ),
        grid=json.loads(json.dumps(grid)),
        created=old.created if old is not None else datetime.datetime.now(datetime.timezone.utc).isoformat(),
        provenance=_provenance(old, runs),
    )
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, sweep)
    return sweep


def _provenance(old: Sweep | None, runs: Sequence[SweepRun]) -> dict[str, Any]:
    """The manifest's provenance: this process's for a new sweep, appended to ``resumes`` for a reopened one."""
    import torch

    from creditzoo import provenance

    device = runs[0].config.device if runs else "auto"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    current = provenance.collect(device)
    return {**current, "resumes": []} if old is None else provenance.with_resume(old.provenance, current)


def _reopened(status: str) -> str:
    """A run not finished on disk: "failed" stays failed (until retried), anything else is pending."""
    return "failed" if status == "failed" else "pending"


def _choices(config: TrainConfig) -> dict[str, Any]:
    """The fields that decide what a run computes (not where it runs or what mirrors it)."""
    return {k: v for k, v in config.to_dict().items() if k not in NOT_A_CHOICE}


def _difference(old: SweepRun, new: SweepRun) -> str:
    a, b = _choices(old.config), _choices(new.config)
    return ", ".join(f"{key}: {a[key]!r} -> {b[key]!r}" for key in a if a[key] != b[key])
