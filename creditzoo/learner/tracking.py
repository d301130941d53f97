"""Live tracking: mirror a run's metrics lines, test scores and evaluation grids to TensorBoard or W&B as it goes.

``metrics.jsonl`` stays the record of truth; a tracker only mirrors it, so a run without one loses nothing.
The backends are optional extras (``pip install 'creditzoo[tensorboard]'`` / ``'creditzoo[wandb]'``) and are
imported only when a run asks for them. W&B honours ``WANDB_MODE=offline`` (it then writes under the run
directory and needs no account) and ``WANDB_PROJECT`` (default "creditzoo").
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

TRACKERS = ("tensorboard", "wandb")
"""Valid names for ``TrainConfig.log``."""


class TrackerUnavailableError(ValueError):
    """A tracker was asked for whose package is not installed."""


class Tracker(Protocol):
    """What the run loop calls; every method must be cheap next to an iteration."""

    def log_metrics(self, iteration: int, metrics: Mapping[str, Any]) -> None:
        """Mirror one metrics line (the one just written to metrics.jsonl)."""

    def log_evaluation(self, iteration: int, summary: Mapping[str, Any], grid: Any) -> None:
        """Mirror an evaluation: its summary (EvalResult.to_dict()) and its grid image (a PIL image)."""

    def close(self) -> None:
        """Flush and release the backend."""


class NullTracker:
    """The default: tracks nothing."""

    def log_metrics(self, iteration: int, metrics: Mapping[str, Any]) -> None:
        """Do nothing."""

    def log_evaluation(self, iteration: int, summary: Mapping[str, Any], grid: Any) -> None:
        """Do nothing."""

    def close(self) -> None:
        """Do nothing."""


def scalars(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a metrics line or summary, flattened: lists as ``name/i``, dicts as ``name/key``.

    None, strings and non-finite values are left out (a tracker plots numbers; metrics.jsonl keeps the rest).
    """
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(scalars(value, prefix=f"{name}/"))
        elif isinstance(value, (list, tuple)):
            flat.update(scalars({str(i): v for i, v in enumerate(value)}, prefix=f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[name] = float(value)
    return flat


class TensorBoardTracker:
    """Writes event files to ``RUN_DIR/tensorboard`` (``tensorboard --logdir runs/``)."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any], *, start: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise TrackerUnavailableError(
                "--log tensorboard needs the tensorboard package: pip install 'creditzoo[tensorboard]'"
            ) from error
        self.fresh = not (run_dir / "tensorboard").exists()  # no history mirrored yet: a resume backfills it
        # a resumed run drops what it logged after its checkpoint, so the curves never double back
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start + 1 if start else None)
        if not start:
            self.writer.add_text("config", "```\n" + json.dumps(dict(config), indent=2) + "\n```", 0)

    def log_metrics(self, iteration: int, metrics: Mapping[str, Any]) -> None:
        """One scalar per number of the line (tp_rate_per_step as tp_rate_per_step/k)."""
        for name, value in scalars({k: v for k, v in metrics.items() if k != "iteration"}).items():
            self.writer.add_scalar(name, value, iteration)
        self.writer.flush()

    def log_evaluation(self, iteration: int, summary: Mapping[str, Any], grid: Any) -> None:
        """Per-category scores as ``eval/per_category/<category>/<score>`` and the grid as ``eval/grid``."""
        import numpy as np

        for name, value in scalars(summary, prefix="eval/").items():
            self.writer.add_scalar(name, value, iteration)
        if grid is not None:
            self.writer.add_image("eval/grid", np.asarray(grid.convert("RGB")), iteration, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        """Close the event file."""
        self.writer.close()


class WandbTracker:
    """Logs to Weights & Biases; the run id is kept in ``RUN_DIR/wandb_id`` so a resumed run continues it."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any], *, start: int) -> None:
        try:
            import wandb
        except ImportError as error:
            raise TrackerUnavailableError(
                "--log wandb needs the wandb package: pip install 'creditzoo[wandb]'"
            ) from error
        id_file = run_dir / "wandb_id"
        self.fresh = not id_file.exists()  # a new W&B run: a resume backfills the history
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)  # W&B ids: [0-9a-z]
        id_file.write_text(run_id)
        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "creditzoo"),
            name=run_dir.name,
            dir=str(run_dir),
            config=dict(config),
            id=run_id,
            resume="allow",
        )

    def log_metrics(self, iteration: int, metrics: Mapping[str, Any]) -> None:
        """One W&B step per iteration."""
        self.run.log(scalars({k: v for k, v in metrics.items() if k != "iteration"}), step=iteration)

    def log_evaluation(self, iteration: int, summary: Mapping[str, Any], grid: Any) -> None:
        """Per-category scores and the grid image, committed with the iteration's metrics line."""
        values: dict[str, Any] = dict(scalars(summary, prefix="eval/"))
        if grid is not None:
            values["eval/grid"] = self.wandb.Image(grid)
        self.run.log(values, step=iteration, commit=False)

    def close(self) -> None:
        """Finish the W&B run."""
        self.run.finish()


class _Several:
    """Fans every call out to several trackers."""

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def log_metrics(self, iteration: int, metrics: Mapping[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.log_metrics(iteration, metrics)

    def log_evaluation(self, iteration: int, summary: Mapping[str, Any], grid: Any) -> None:
        for tracker in self.trackers:
            tracker.log_evaluation(iteration, summary, grid)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


BACKENDS = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
"""The package each backend imports (checked before a run starts, so a missing one costs no run directory)."""


def check_available(names: Sequence[str]) -> None:
    """Raise :class:`TrackerUnavailableError` naming the extra to install when a backend's package is missing."""
    import importlib.util

    for name in names:
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise TrackerUnavailableError(
                f"--log {name} needs the {PACKAGES[name]} package: pip install 'creditzoo[{name}]'"
            )


def open_tracker(
    names: Sequence[str],
    run_dir: Path,
    config: Mapping[str, Any],
    *,
    start: int = 0,
    history: Sequence[Mapping[str, Any]] = (),
) -> Tracker:
    """The tracker for ``TrainConfig.log``: a :class:`NullTracker` for none, else every named backend.

    Args:
        names: backend names from :data:`TRACKERS`.
        run_dir: the run directory (backends write below it).
        config: the run's configuration, recorded by the backend.
        start: the iteration the run continues from (0 for a new run).
        history: a resumed run's metrics lines up to ``start``; a backend that has mirrored nothing of this run
            yet (``--resume --log tensorboard`` on a run trained without it) logs them first, so its curves
            begin at iteration 0. Evaluation grids and per-category scores of those iterations are not
            backfilled.

    Raises:
        ValueError: for an unknown name (listing the valid ones) or a backend that is not installed.
    """
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown tracker {unknown[0]!r}; valid: {', '.join(TRACKERS)}")
    if not names:
        return NullTracker()
    trackers = [BACKENDS[name](run_dir, config, start=start) for name in dict.fromkeys(names)]
    for tracker in trackers:
        if start and tracker.fresh:
            for line in history:
                tracker.log_metrics(line["iteration"], line)
    return trackers[0] if len(trackers) == 1 else _Several(trackers)
