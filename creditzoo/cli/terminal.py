"""What the commands print on a terminal or a pipe: listings that fit the width, and a training run's progress.

User text (paths, prompts, noise specs) is printed literally everywhere: rich consoles are built with
``markup=False, emoji=False`` (``rich.markup.escape`` would not stop ``:smile:`` from becoming an emoji).
"""

from __future__ import annotations

import math
import shutil
import textwrap
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import typer
from rich.console import Console

INDENT = "    "
MIN_WIDTH, MAX_WIDTH = 60, 100


def text_width() -> int:
    """Columns for plain listings: the terminal's (``$COLUMNS`` first; 80 on a pipe), kept within 60-100."""
    return max(MIN_WIDTH, min(MAX_WIDTH, shutil.get_terminal_size((80, 24)).columns))


def echo_wrapped(text: str, width: int, *, indent: str = INDENT, hang: str = "") -> None:
    """Print ``text`` indented by ``indent`` and wrapped at ``width`` columns, continuation lines by ``hang`` more.

    Words are never split (a word longer than the line stays whole, past the width).
    """
    for line in textwrap.wrap(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=indent + hang,
        break_long_words=False,
        break_on_hyphens=False,
    ):
        typer.echo(line)


def duration(seconds: float) -> str:
    """A short human duration: ``42s``, ``3m07s``, ``2h05m``; ``?`` for a non-finite value."""
    if not math.isfinite(seconds):
        return "?"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def iteration_status(metrics: Mapping[str, Any], test_metric: str | None = None) -> str:
    """``reward 0.6458  tp 0.250``, and ``test 0.6590`` when the iteration was evaluated.

    Args:
        metrics: the iteration's metrics line.
        test_metric: the metrics-line key the ``test`` value is read from: the task's primary metric,
            e.g. ``test_partial_score`` (None: no test value).
    """
    status = f"reward {metrics['reward_mean']:.4f}  tp {metrics['tp_rate']:.3f}"
    if test_metric is not None and test_metric in metrics:
        status += f"  test {metrics[test_metric]:.4f}"
    return status


class TrainProgress:
    """A training run's progress: a rich bar with elapsed time and ETA on a terminal, plain lines on a pipe.

    On a pipe (a log file, ``tee``, a batch job) every iteration prints one line as soon as it ends, flushed::

        iteration 2/10  reward 0.6458  tp 0.250  test 0.6590  elapsed 41s  eta 2m44s

    The ETA is the mean time per iteration since the first report (in this process: a resumed run counts from its
    restart), times the iterations left.
    """

    def __init__(
        self,
        description: str,
        total: int,
        *,
        console: Console,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        test_metric: str | None = None,
    ) -> None:
        """Set up; nothing is shown before ``with``.

        Args:
            description: what is trained, e.g. "tp_grpo_strict on geneval" (printed literally).
            total: the run's last iteration.
            console: where the bar goes; it decides terminal or not (``console.is_terminal``).
            enabled: False on the non-main processes of a multi-process launch (they print nothing).
            clock: seconds, monotonic (tests pass a fake one).
            test_metric: the metrics-line key of the task's primary metric, shown as ``test`` when evaluated
                (:attr:`~creditzoo.tasks.Metric.test_key`); None shows none.
        """
        self.description = description
        self.total = total
        self.console = console
        self.enabled = enabled
        self.clock = clock
        self.test_metric = test_metric
        self.bar: Any = None
        self._start = clock()
        self._first: tuple[int, float] | None = None  # (iteration, clock) of the first report

    def __enter__(self) -> TrainProgress:
        self._start = self.clock()
        if self.enabled and self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("{task.description}", markup=False, style="bold"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}", markup=False),
                console=self.console,
                transient=False,
            )
            self.bar.__enter__()
            self._task = self.bar.add_task(self.description, total=self.total, status="sampling...")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.bar is not None:
            self.bar.__exit__(kind, error, trace)

    def eta(self, iteration: int) -> float:
        """Seconds left after ``iteration``: the mean time per iteration since the first report, times those left.

        At the first report the only clock is the process's start, which also counts loading the model and the
        base evaluation: that first estimate is high, the next ones are not.
        """
        now = self.clock()
        if self._first is None:
            self._first = (iteration, now)
            return (now - self._start) * (self.total - iteration)
        first, since = self._first
        return (now - since) / max(iteration - first, 1) * (self.total - iteration)

    def update(self, iteration: int, metrics: Mapping[str, Any]) -> None:
        """Report a finished iteration with its metrics line."""
        if not self.enabled:
            return
        status = iteration_status(metrics, self.test_metric)
        eta = self.eta(iteration)
        if self.bar is not None:
            self.bar.update(self._task, completed=iteration, status=status)
            return
        elapsed = self.clock() - self._start
        typer.echo(
            f"iteration {iteration}/{self.total}  {status}  elapsed {duration(elapsed)}  eta {duration(eta)}"
        )  # click's echo flushes: a pipe sees the line now, not when the run ends
