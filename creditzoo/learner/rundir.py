"""Keeping a run directory whole: one writer at a time, leftovers of a killed writer, workers tied to a parent.

* **The lock.** ``RUN_DIR/.lock`` names the process that writes the run (``{"pid", "host", "started"}``).
  :func:`lock_run_dir` creates it and holds an exclusive ``fcntl.flock`` on it for the whole run; a second
  writer (``train --resume``, ``--overwrite``, a sweep worker) is refused with :class:`RunLockedError` naming
  the holder. A lock whose holder is gone (no flock held, and its pid no longer runs on this host) is stale and
  taken over with a warning. The file is removed when the holder ends, normally or by an exception.
* **Leftovers.** A writer killed mid-save leaves temporaries (``.metrics.jsonl.XXXX``, a checkpoint staging
  directory ``checkpoints/.iter_000004.XXXX``); :func:`remove_temporaries` deletes them once the lock is held.
* **Workers die with their parent.** :func:`die_with_parent` asks Linux to send SIGTERM to the calling process
  when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so a sweep worker does not train on as an orphan.

This module imports neither torch nor anything heavy: a worker calls :func:`die_with_parent` first thing.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import json
import os
import shutil
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows; the pid check alone guards the run there
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
"""The lock file's name inside a run directory."""

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def warn(message: str) -> None:
    """Report a repaired or skipped piece of a run directory: one line ``warning: ...`` on stderr.

    Printed, not logged: it must reach the person at the terminal (and a sweep worker's log) whatever logging
    configuration the libraries around it install.
    """
    print(f"warning: {message}", file=sys.stderr, flush=True)


class RunLockedError(ValueError):
    """Another live process writes the run directory (the message names its pid and host)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a run directory's lock."""

    pid: int
    host: str
    started: str

    @classmethod
    def me(cls) -> Holder:
        """The holder record of the calling process, stamped now."""
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return cls(pid=os.getpid(), host=socket.gethostname(), started=now)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder a lock file names, or None for an empty or unreadable one (a writer killed mid-write)."""
        try:
            data = json.loads(text)
            return cls(pid=int(data["pid"]), host=str(data["host"]), started=str(data.get("started", "?")))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        """``pid 123 on host h (since 2025-01-01T10:00:00+00:00)``."""
        return f"pid {self.pid} on host {self.host} (since {self.started})"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, already dead but not yet reaped, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)
    return state not in ("Z", "X")


class RunLock:
    """The held lock of one run directory; :meth:`release` (or leaving the ``with`` block) gives it up."""

    def __init__(self, run_dir: Path, descriptor: int, created: tuple[Path, ...]) -> None:
        self.path = run_dir / LOCK_NAME
        self.descriptor: int | None = descriptor
        self.created = created  # the directories lock_run_dir made, the run directory first, then its parents

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and close it; remove the directories made for it if empty."""
        if self.descriptor is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self.descriptor).st_ino:
                self.path.unlink()
        os.close(self.descriptor)
        self.descriptor = None
        _remove_if_empty(self.created)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run_dir(run_dir: str | Path) -> RunLock:
    """Become the one writer of ``run_dir`` (created if missing; removed again on release if still empty).

    Missing parents are created too and, like the run directory, removed again on release while empty: a run
    refused after taking the lock (a model that does not load) leaves no ``runs/`` behind.

    Raises:
        RunLockedError: a live process holds the lock (naming its pid and host), or a process on another host
            does (its liveness cannot be checked from here).
        OSError: the directory cannot be created or written (the caller turns it into one line).
    """
    run_dir = Path(run_dir)
    created = _missing_dirs(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    try:
        descriptor = _open_locked(path)
        holder = Holder.parse(os.pread(descriptor, 4096, 0).decode(errors="replace"))
        me = Holder.me()
        if holder is not None and holder.pid != me.pid:
            if holder.host != me.host or pid_alive(holder.pid):
                os.close(descriptor)
                raise RunLockedError(_locked_message(run_dir, holder))
            warn(f"{path} was left by {holder.describe()}, which is gone; taking the run directory over")
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(dataclasses.asdict(me)) + "\n").encode(), 0)
        os.fsync(descriptor)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            _remove_if_empty(created)
        raise
    return RunLock(run_dir, descriptor, created)


def _missing_dirs(run_dir: Path) -> tuple[Path, ...]:
    """``run_dir`` and those of its parents that do not exist yet, deepest first (empty when it exists)."""
    missing = []
    for path in (run_dir, *run_dir.parents):
        if path.exists():
            break
        missing.append(path)
    return tuple(missing)


def _remove_if_empty(created: tuple[Path, ...]) -> None:
    """Remove the directories this process created, deepest first, stopping at the first one not empty."""
    for path in created:
        try:
            path.rmdir()
        except OSError:  # not empty: the run (or a sibling run under the same parent) wrote something, keep it
            return


def _open_locked(path: Path) -> int:
    """Open (creating) the lock file and take its flock; retry when the file was replaced meanwhile."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is None:
            return descriptor
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Holder.parse(os.pread(descriptor, 4096, 0).decode(errors="replace"))
            os.close(descriptor)
            raise RunLockedError(_locked_message(path.parent, holder)) from None
        except OSError:  # a filesystem without flock: the pid check alone decides
            return descriptor
        try:
            same = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return descriptor
        os.close(descriptor)  # the holder released (removed) it between our open and flock: start again


def _locked_message(run_dir: Path, holder: Holder | None) -> str:
    who = holder.describe() if holder is not None else "another process"
    return (
        f"run directory {str(run_dir)!r} is in use by {who}; wait for it to end, or remove "
        f"{str(run_dir / LOCK_NAME)!r} if that process is gone"
    )


def clear_run_dir(run_dir: Path) -> None:
    """Delete everything in ``run_dir`` except its lock file (``--overwrite`` of a directory we hold)."""
    for child in run_dir.iterdir():
        if child.name == LOCK_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def remove_temporaries(run_dir: Path) -> list[Path]:
    """Delete what a killed writer left half-written (call with the lock held); return what was removed.

    These are the temporaries of :mod:`creditzoo.learner.checkpoint`'s atomic writes: dot-files named after
    the file they were to replace, and checkpoint staging directories (``checkpoints/.iter_NNNNNN.XXXX``).
    """
    patterns = {
        run_dir: (".config.json.*", ".metrics.jsonl.*"),
        run_dir / "eval": (".iter_*.json.*", ".final.json.*"),
        run_dir / "rollouts": (".iter_*.safetensors.tmp",),
        run_dir / "checkpoints": (".iter_*", ".latest.*"),
    }
    removed = []
    for folder, globs in patterns.items():
        if not folder.is_dir():
            continue
        for pattern in globs:
            for path in folder.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def die_with_parent(parent: int) -> None:
    """Have this process receive SIGTERM when its parent ``parent`` dies (Linux; a no-op elsewhere).

    Call it first thing in a worker started by ``parent`` (pass ``os.getpid()`` of the parent on the command
    line): when the parent is already gone by then, the worker exits at once. SIGTERM is turned into
    ``SystemExit`` so the worker's ``finally`` blocks run (its run-directory lock is released).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    signal.signal(signal.SIGTERM, _exit_on_term)
    if os.getppid() != parent:  # the parent died before prctl took effect
        raise SystemExit(143)


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
