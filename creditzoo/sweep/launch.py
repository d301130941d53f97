"""Executing a sweep's runs: in this process, in worker subprocesses (``jobs > 1``), or through submitit.

A worker is ``python -m creditzoo.sweep SWEEP_DIR RUN_NAME [--threads N] [--import MODULE] [--parent PID]``
(``python -m creditzoo.learner.sweep``, the module path of older sweeps, still works).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creditzoo.learner.rundir import RunLockedError, die_with_parent
from creditzoo.sweep.manifest import MANIFEST, SweepError, read_manifest, run_status, write_manifest

LAUNCHERS = ("local", "submitit")
LOCKED_EXIT = 3
"""Exit status of a worker whose run another live process holds (it trained nothing)."""


def train_run(out: str, name: str, threads: int | None = None, imports: Sequence[str] = ()) -> dict[str, Any]:
    """Train (or continue) one run of the sweep in ``out``: the unit a subprocess or a cluster job executes.

    Args:
        out: the sweep directory.
        name: the run's name in the manifest.
        threads: torch CPU threads (None: torch's default).
        imports: modules to import first (e.g. ones that register extra tasks in ``creditzoo.tasks.TASKS``).

    Returns:
        The run's last metrics line.
    """
    import torch

    from creditzoo.learner.run import train

    for module in imports:
        importlib.import_module(module)
    if threads is not None:
        torch.set_num_threads(threads)
    sweep = read_manifest(out)
    if sweep is None:
        raise SweepError(f"no {MANIFEST} in {out!r}")
    run = sweep.run(name)
    run_dir = Path(out) / run.name
    summary = train(run.config, run_dir, resume=(run_dir / "config.json").exists())
    return summary.metrics[-1]


@dataclass(frozen=True)
class LaunchOptions:
    """How to execute a sweep's runs.

    Attributes:
        jobs: runs at once; 1 trains in this process, more start subprocesses with ``cpu_count // jobs`` threads
            each (on one GPU they share the card).
        launcher: "local" or "submitit" (Slurm, or submitit's local executor with ``cluster="local"``).
        cluster: submitit's cluster ("slurm", "local", "debug"; None: auto-detect).
        executor_parameters: passed to submitit's ``executor.update_parameters`` (e.g. slurm_partition,
            timeout_min, gpus_per_node).
        imports: modules each worker imports before training (tasks registered outside creditzoo).
    """

    jobs: int = 1
    launcher: str = "local"
    cluster: str | None = None
    executor_parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    imports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise SweepError(f"jobs must be >= 1, got {self.jobs}")
        if self.launcher not in LAUNCHERS:
            raise SweepError(f"unknown launcher {self.launcher!r}; valid: {', '.join(LAUNCHERS)}")


Report = Callable[[str, str], None]
"""Called with (run name, new status) whenever a run starts or ends."""


def execute(
    out: str | Path, names: Sequence[str], options: LaunchOptions, report: Report | None = None
) -> dict[str, str]:
    """Train the runs ``names`` of the sweep in ``out`` that are not finished, updating the manifest as they go.

    Args:
        out: a sweep directory prepared by :func:`prepare`.
        names: the runs to bring to "finished" (finished ones are skipped).
        options: :class:`LaunchOptions`.
        report: optional progress callback.

    Returns:
        {name: final status} of the runs asked for.
    """
    out = Path(out)
    tracker = _StatusBook(out, report)
    todo = [name for name in names if tracker.status(name) != "finished"]
    if options.launcher == "submitit":
        _execute_submitit(out, todo, options, tracker)
    elif options.jobs == 1:
        _execute_here(out, todo, options, tracker)
    else:
        _execute_subprocesses(out, todo, options, tracker)
    return {name: tracker.status(name) for name in names}


class _StatusBook:
    """The manifest's statuses, kept in memory and written atomically on every change (by one process only)."""

    def __init__(self, out: Path, report: Report | None) -> None:
        sweep = read_manifest(out)
        if sweep is None:
            raise SweepError(f"no {MANIFEST} in {str(out)!r}; prepare the sweep first")
        self.out, self.sweep, self.report = out, sweep, report

    def status(self, name: str) -> str:
        return self.sweep.run(name).status

    def set(self, name: str, status: str) -> None:
        self.sweep = self.sweep.with_status(name, status)
        write_manifest(self.out, self.sweep)
        if self.report is not None:
            self.report(name, status)

    def finish(self, name: str, ok: bool, busy: bool = False) -> None:
        """Record how a run's training ended.

        The files on disk decide "finished" (whoever trained it); a run another live process holds (``busy``)
        stays "pending"; anything else is "failed".
        """
        run = self.sweep.run(name)
        if run_status(self.out / name, run.config) == "finished":
            self.set(name, "finished")
        else:
            self.set(name, "pending" if busy else "failed")


def _execute_here(out: Path, names: Sequence[str], options: LaunchOptions, book: _StatusBook) -> None:
    for name in names:
        book.set(name, "running")
        try:
            train_run(str(out), name, None, options.imports)
        except RunLockedError as error:  # another process (an old sweep's worker?) trains it: leave it be
            _log(out, name, f"not started: {error}")
            book.finish(name, ok=False, busy=True)
            continue
        except Exception as error:  # noqa: BLE001 - one failed run must not stop the others
            _log(out, name, f"failed: {type(error).__name__}: {error}")
            book.finish(name, ok=False)
            continue
        book.finish(name, ok=True)


def _log(out: Path, name: str, message: str) -> None:
    path = out / "logs" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as stream:
        stream.write(message + "\n")


def _execute_subprocesses(out: Path, names: Sequence[str], options: LaunchOptions, book: _StatusBook) -> None:
    threads = max(1, (os.cpu_count() or 1) // options.jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    queue, active = list(names), {}
    (out / "logs").mkdir(exist_ok=True)
    try:
        while queue or active:
            while queue and len(active) < options.jobs:
                name = queue.pop(0)
                log = (out / "logs" / f"{name}.log").open("ab")
                command = [sys.executable, "-m", "creditzoo.sweep", str(out), name, "--threads", str(threads)]
                command += [f"--import={module}" for module in options.imports]
                command += [f"--parent={os.getpid()}"]  # the worker dies with this process (die_with_parent)
                # a session of its own: a Ctrl-C reaches only this process, which stops the workers' groups
                worker = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
                active[name] = (worker, log)
                book.set(name, "running")
            time.sleep(0.1)
            for name, (process, log) in list(active.items()):
                if process.poll() is not None:
                    log.close()
                    del active[name]
                    book.finish(name, ok=process.returncode == 0, busy=process.returncode == LOCKED_EXIT)
    finally:  # interrupted: stop the workers this sweep started; their runs resume from checkpoints next time
        for process, log in active.values():
            _stop(process)
            log.close()


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM a worker's process group (its own session: the worker and anything it started) and reap it."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError, AttributeError):  # gone already, or no process groups here
        process.terminate()
    process.wait()


def _execute_submitit(out: Path, names: Sequence[str], options: LaunchOptions, book: _StatusBook) -> None:
    try:
        import submitit
    except ImportError as error:
        raise SweepError("--launcher submitit needs the submitit package: pip install 'creditzoo[cluster]'") from error
    executor = submitit.AutoExecutor(folder=str(out / "submitit"), cluster=options.cluster)
    executor.update_parameters(name="creditzoo-sweep", **options.executor_parameters)
    jobs = {}
    for name in names:
        jobs[name] = executor.submit(train_run, str(out), name, None, tuple(options.imports))
        book.set(name, "running")
    for name, job in jobs.items():
        try:
            job.result()
        except Exception as error:  # noqa: BLE001 - a failed job must not hide the others' results
            _log(out, name, f"job {job.job_id} failed: {error}")
            book.finish(name, ok=False)
            continue
        book.finish(name, ok=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Worker entry: ``python -m creditzoo.sweep SWEEP_DIR RUN_NAME [--threads N] [--import MODULE]``."""
    parser = argparse.ArgumentParser(prog="python -m creditzoo.sweep", description=main.__doc__)
    parser.add_argument("out")
    parser.add_argument("name")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--import", dest="imports", action="append", default=[])
    parser.add_argument("--parent", type=int, default=None, help="pid of the sweep; the worker dies with it")
    args = parser.parse_args(argv)
    if args.parent is not None:
        die_with_parent(args.parent)
    try:
        line = train_run(args.out, args.name, args.threads, args.imports)
    except RunLockedError as error:
        print(f"not started: {error}", file=sys.stderr)
        raise SystemExit(LOCKED_EXIT) from None
    print(json.dumps({"run": args.name, "last": line}))
