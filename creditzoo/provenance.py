"""Provenance: which code, library versions and machine produced a run or a sweep.

:func:`collect` returns one JSON-ready dict. ``config.json`` stores it under ``"provenance"`` and a sweep's
``manifest.json`` under the same key; a resumed run or a reopened sweep keeps the original and appends its own
record to ``"resumes"`` (:func:`with_resume`). Every field that cannot be found is ``None`` (an installed wheel
has no git commit, a machine without ``/proc/cpuinfo`` may not name its CPU), so collecting never fails.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

PACKAGE_DIR = Path(__file__).resolve().parent
"""The ``creditzoo`` package directory; its parent is the source checkout, when there is one."""
GIT_TIMEOUT_S = 10.0


def collect(device: torch.device | str | None = None) -> dict[str, Any]:
    """Describe the code and the machine that run now.

    Args:
        device: the device the run trains on (its name is recorded; for CUDA also the card's name).

    Returns:
        ``{"git_commit", "git_dirty", "creditzoo", "torch", "diffusers", "python", "torch_threads", "device",
        "device_name", "cpu_model", "hostname", "started_utc"}``: the commit of the creditzoo source checkout and
        whether its package files differ from it (both None outside a git checkout), the three package versions
        (None when not installed), the Python version, ``torch.get_num_threads()``, the device, the CUDA card's
        name (None on the CPU), the CPU model, the host name and the UTC time of the call (ISO 8601).
    """
    commit, dirty = git_state(PACKAGE_DIR.parent)
    device = torch.device(device) if device is not None else None
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "creditzoo": _version("creditzoo"),
        "torch": torch.__version__,
        "diffusers": _version("diffusers"),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else None,
        "device_name": _device_name(device),
        "cpu_model": cpu_model(),
        "hostname": socket.gethostname(),
        "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def with_resume(stored: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """The provenance to store after a resume: the original one with ``current`` appended to ``"resumes"``.

    Args:
        stored: the provenance recorded so far (None for a run or sweep made before provenance was recorded).
        current: :func:`collect` of the resuming process.

    Returns:
        ``stored`` with ``"resumes": [..., current]``. When nothing was stored, the original is unknown: every
        field is None and ``current`` is the first resume.
    """
    if not isinstance(stored, dict):
        return {**dict.fromkeys(current), "resumes": [current]}
    return {**stored, "resumes": [*stored.get("resumes", []), current]}


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """The commit checked out at ``root`` and whether the package's files differ from it.

    Only a checkout whose top level is ``root`` itself counts: an installed package inside some other repository
    (a virtual environment in a project folder) reports ``(None, None)``. The dirty flag covers tracked and new
    files under the package directory (not run outputs or study files elsewhere in the tree).

    Args:
        root: the directory that holds the ``creditzoo`` package.

    Returns:
        (40-hex commit, dirty), or (None, None) when ``root`` is not a git checkout or git is unavailable.
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return None, None
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--", PACKAGE_DIR.name)
    return commit, (None if status is None else bool(status))


def cpu_model() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``, else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _device_name(device: torch.device | None) -> str | None:
    if device is None or device.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(device)
