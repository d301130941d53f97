"""A sweep: a grid of training runs (algorithms x seeds x option values) in one directory, with a manifest.

The paper's studies are grids: several credit-assignment schemes, three seeds or more, and for the
sensitivity studies one option at several values (TP-GRPO, Sec. 5: window size, SDE noise level, KL weight).
A sweep expands such a grid into ordinary run directories (:func:`creditzoo.learner.run.train`) and keeps a
manifest that ``creditzoo analyze compare`` and ``robustness`` read. It resumes: finished runs are skipped,
interrupted ones continue from their last checkpoint, and a finished run is never trained again.

Layout of a sweep directory::

    manifest.json        {"runs": [{"name", "dir", "algo", "seed", "config", "status"}, ...],
                          "grid": {field: [values, ...]}, "created": ISO time,
                          "provenance": {git commit, versions, machine, ..., "resumes": [...]}}
    <name>/              one run directory per run (``dir`` in the manifest, relative to the sweep directory)
    logs/<name>.log      output of a run trained in a subprocess (``jobs > 1``) or through submitit
    submitit/            submitit's job files (``launcher="submitit"``)

Grid keys are TrainConfig field names; the command line also takes the ``creditzoo train`` spellings
(``--grid lr=...``, ``--grid window=...``, see :data:`OPTION_ALIASES`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creditzoo.learner.checkpoint import atomic_write_json, read_metrics
from creditzoo.learner.config import OPTION_ALIASES, TrainConfig
from creditzoo.learner.rundir import RunLockedError, die_with_parent

STATUSES = ("pending", "running", "finished", "failed")
LAUNCHERS = ("local", "submitit")
MANIFEST = "manifest.json"
SWEPT_ELSEWHERE = {"algo": "--algo", "seed": "--seeds"}
"""Fields a grid may not take, with the option that sweeps them instead."""
NOT_GRIDDABLE = ("algo_options", "device", "log")
"""Fields that are not a training choice one compares (or have no single-value spelling)."""
NOT_A_CHOICE = ("device", "log")
"""Fields a reopened sweep may change: they do not change what a run computes (on the same device kind)."""
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]")
LOCKED_EXIT = 3
"""Exit status of a worker whose run another live process holds (it trained nothing)."""


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


# ----------------------------------------------------------------------------------------------- the grid


def grid_field(option: str) -> str:
    """The TrainConfig field a grid option names (``lr`` -> ``learning_rate``, ``noise-level`` -> ``noise_level``).

    Raises:
        SweepError: for an option that is not a griddable field, listing the valid ones.
    """
    name = option.strip().replace("-", "_")
    name = OPTION_ALIASES.get(name, name)
    if name in SWEPT_ELSEWHERE:
        raise SweepError(f"--grid cannot take {option!r}; sweep it with {SWEPT_ELSEWHERE[name]}")
    if name not in _field_types() or name in NOT_GRIDDABLE:
        raise SweepError(f"unknown grid option {option!r}; valid: {', '.join(griddable_options())}")
    return name


def griddable_options() -> list[str]:
    """Every option ``--grid`` takes: field names and the ``creditzoo train`` spellings, sorted."""
    fields = [name for name in _field_types() if name not in NOT_GRIDDABLE and name not in SWEPT_ELSEWHERE]
    return sorted(set(fields) | set(OPTION_ALIASES))


def parse_grid_value(field: str, text: str) -> Any:
    """Parse one grid value to the type of TrainConfig field ``field`` ("none" gives None where allowed).

    Raises:
        SweepError: when the text does not parse as the field's type.
    """
    kinds = _field_types()[field]
    text = text.strip()
    if text.lower() == "none" and type(None) in kinds:
        return None
    for kind in kinds:
        if kind is int:
            try:
                return int(text)
            except ValueError:
                continue
        if kind is float:
            try:
                return float(text)
            except ValueError:
                continue
        if kind is str and text:
            return text
    names = " or ".join("none" if kind is type(None) else kind.__name__ for kind in kinds)
    raise SweepError(f"grid value {text!r} for {field} is not {names}")


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """Parse ``--grid option=v1,v2`` specs into {field: [values]} (fields in the order given).

    Raises:
        SweepError: for a malformed spec, an unknown option, a repeated option or value, or a bad value.
    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        option, sep, values = spec.partition("=")
        if not sep or not option.strip() or not values.strip():
            raise SweepError(f"malformed --grid {spec!r}; expected option=value1,value2,...")
        field = grid_field(option)
        if field in grid:
            raise SweepError(f"--grid gives {field} twice")
        parsed = [parse_grid_value(field, value) for value in values.split(",")]
        if len(set(map(repr, parsed))) != len(parsed):
            raise SweepError(f"--grid {spec!r} repeats a value")
        grid[field] = parsed
    return grid


def parse_seeds(text: str) -> list[int]:
    """Parse ``--seeds 0,1,2`` (or a range ``0-4``) into distinct ints.

    Raises:
        SweepError: when the text is not a comma-separated list of non-negative integers or ``a-b``.
    """
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise SweepError(f"malformed --seeds {text!r}; expected e.g. 0,1,2 or 0-4")
        seeds += list(range(int(low), int(high) + 1)) if dash else [int(low)]
    if not seeds or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds {text!r} is empty or repeats a seed")
    return seeds


def run_name(algo: str, values: dict[str, Any], seed: int) -> str:
    """The run's name and directory: ``algo[-field=value...]-seedN`` with unsafe characters made ``_``."""
    parts = [algo, *(f"{field}={value}" for field, value in values.items()), f"seed{seed}"]
    return _UNSAFE.sub("_", "-".join(parts))


def expand(
    algos: Sequence[str],
    seeds: Sequence[int],
    grid: dict[str, list[Any]],
    make_config: Callable[[dict[str, Any]], TrainConfig],
) -> list[SweepRun]:
    """Every (algo, grid point, seed) as a run, algorithm-major, seed fastest.

    Args:
        algos: algorithms, in order.
        seeds: seeds, in order.
        grid: {field: [values]}.
        make_config: builds the resolved config from the varying fields ({"algo", "seed", grid fields});
            the caller puts the fixed options and defaults in.

    Raises:
        SweepError: when two runs would get the same name or no algorithm is given.
    """
    if not algos:
        raise SweepError("a sweep needs at least one --algo")
    if len(set(algos)) != len(algos):
        raise SweepError(f"--algo repeats an algorithm: {', '.join(algos)}")
    runs = []
    for algo in algos:
        for point in itertools.product(*grid.values()):
            values = dict(zip(grid, point, strict=True))
            for seed in seeds:
                config = make_config({**values, "algo": algo, "seed": seed})
                runs.append(SweepRun(name=run_name(algo, values, seed), algo=algo, seed=seed, config=config))
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise SweepError(f"two runs of the grid would share the directory {duplicate!r}; use distinct values")
    return runs


# ---------------------------------------------------------------------------------------- the manifest


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
                config=TrainConfig.from_dict(entry["config"]),
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


# ------------------------------------------------------------------------------------------- running


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
                command = [sys.executable, "-m", "creditzoo.learner.sweep", str(out), name, "--threads", str(threads)]
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


# ---------------------------------------------------------------------------------------------- helpers


def _field_types() -> dict[str, tuple[type, ...]]:
    """TrainConfig field -> the types its values may have (e.g. ``int | None`` -> (int, NoneType))."""
    hints = typing.get_type_hints(TrainConfig)
    types: dict[str, tuple[type, ...]] = {}
    for field in dataclasses.fields(TrainConfig):
        hint = hints[field.name]
        args = typing.get_args(hint)
        types[field.name] = tuple(a for a in args if isinstance(a, type)) if args else (hint,)
        if typing.get_origin(hint) in (dict, list, tuple):
            types[field.name] = (typing.get_origin(hint),)
    return types


def _main(argv: Sequence[str] | None = None) -> None:
    """Worker entry: ``python -m creditzoo.learner.sweep SWEEP_DIR RUN_NAME [--threads N] [--import MODULE]``."""
    parser = argparse.ArgumentParser(prog="python -m creditzoo.learner.sweep", description=_main.__doc__)
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


if __name__ == "__main__":
    _main()
