"""Run-directory files, written atomically: a crash leaves either the old file or the new one, never half.

Layout of a run directory::

    config.json               resolved TrainConfig
    metrics.jsonl             one JSON line per iteration
    rollouts/iter_000001.safetensors   compact per-iteration record (prompts in the metadata)
    checkpoints/iter_000005/  adapter_model.safetensors + adapter_config.json (peft) + trainer_state.pt,
                              and for diffusers models pytorch_lora_weights.safetensors (diffusers' LoRA
                              format: ``pipe.load_lora_weights("checkpoints/iter_000005")`` loads it)
    checkpoints/latest        name of the newest complete checkpoint
    eval/iter_000000.json, eval/final.json, eval/final.png
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from creditzoo.shapes import DEFAULT_SHAPE

CHECKPOINTS_KEPT = 2


class CheckpointError(ValueError):
    """A checkpoint or adapter file is missing, truncated or corrupt (the message names the file)."""


class MetricsError(ValueError):
    """A metrics.jsonl line is not valid JSON (the message names file and line)."""


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (a brief window other threads could observe)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``.

    The file gets the permissions a plain ``open`` would give it (0o666 less the umask), not mkstemp's 0o600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o666 & ~current_umask())
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value: object) -> None:
    """Atomically write ``value`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())


def read_metrics(run_dir: Path, *, drop_truncated_tail: bool = False) -> list[dict]:
    """All metrics lines of a run (empty if none).

    Args:
        run_dir: the run directory.
        drop_truncated_tail: leave out a last line that does not parse, with a warning (a writer killed
            mid-line on a filesystem without atomic rename); otherwise it is an error like any other.

    Raises:
        MetricsError: a line that is not a JSON object, naming ``metrics.jsonl:LINE``.
    """
    from creditzoo.learner.rundir import warn

    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    texts = path.read_bytes().decode(errors="replace").splitlines()
    numbered = [(number, text) for number, text in enumerate(texts, start=1) if text.strip()]
    lines = []
    for number, text in numbered:
        try:
            line = json.loads(text)
        except json.JSONDecodeError as error:
            if drop_truncated_tail and number == numbered[-1][0]:
                warn(f"{path}:{number} is a truncated metrics line ({error.msg}); dropped")
                break
            raise MetricsError(f"{path}:{number}: corrupt or truncated metrics line ({error.msg})") from None
        if not isinstance(line, dict) or not isinstance(line.get("iteration"), int):
            raise MetricsError(f"{path}:{number}: metrics line is not an object with an integer 'iteration'")
        lines.append(line)
    return lines


def write_metrics(run_dir: Path, lines: list[dict]) -> None:
    """Atomically replace metrics.jsonl with ``lines``."""
    atomic_write_bytes(run_dir / "metrics.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode())


def write_record(
    run_dir: Path, iteration: int, record: dict[str, torch.Tensor], prompts: list[str], shape: str = DEFAULT_SHAPE
) -> None:
    """Save one iteration's rollout record as safetensors; prompts and rollout shape in its metadata."""
    path = run_dir / "rollouts" / f"iter_{iteration:06d}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    save_file(
        record, str(temporary), metadata={"prompts": json.dumps(prompts), "iteration": str(iteration), "shape": shape}
    )
    temporary.chmod(0o666 & ~current_umask())  # safetensors creates its files 0o600
    os.replace(temporary, path)


def save_checkpoint(run_dir: Path, iteration: int, policy: torch.nn.Module, trainer_state: dict) -> Path:
    """Save the LoRA adapter and trainer state, then point ``checkpoints/latest`` at it.

    The adapter is written in peft's format, and also in diffusers' LoRA format where the model can export it
    (``save_diffusers_lora``: the sd3 and flux backends).
    """
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"iter_{iteration:06d}"
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    staging.chmod(0o777 & ~current_umask())  # mkdtemp's 0o700 would outlive the rename
    policy.save_pretrained(str(staging))
    model = policy.get_base_model()
    if model.exports_diffusers_lora:
        from peft import get_peft_model_state_dict

        model.save_diffusers_lora(staging, get_peft_model_state_dict(policy), policy.peft_config["default"])
    torch.save(trainer_state, staging / "trainer_state.pt")
    for path in staging.rglob("*"):  # safetensors writes 0o600 whatever the umask; make them like any other file
        if path.is_file():
            path.chmod(0o666 & ~current_umask())
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    atomic_write_bytes(root / "latest", name.encode())
    rotate_checkpoints(run_dir, iteration)
    return final


def rotate_checkpoints(run_dir: Path, iteration: int) -> None:
    """Keep checkpoint ``iteration`` and the newest complete ones before it, :data:`CHECKPOINTS_KEPT` in all.

    Older checkpoints are deleted; so are incomplete ones older than the kept complete ones. Checkpoints after
    ``iteration`` (left by a run resumed from an earlier one) stay until the run overwrites them.
    """
    older = [path for path in checkpoint_dirs(run_dir) if _iteration_of(path) < iteration]  # newest first
    complete = 1  # the one just saved
    for path in older:
        if complete < CHECKPOINTS_KEPT:
            complete += is_complete(path)
        else:
            shutil.rmtree(path, ignore_errors=True)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Every ``checkpoints/iter_NNNNNN`` directory of a run, newest first (complete or not)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [path for path in root.glob("iter_*") if path.is_dir() and _iteration_of(path) >= 0]
    return sorted(found, key=_iteration_of, reverse=True)


def _iteration_of(path: Path) -> int:
    digits = path.name.removeprefix("iter_")
    return int(digits) if digits.isdigit() else -1


def is_complete(path: Path) -> bool:
    """Whether a checkpoint directory holds both its adapter and its trainer state (not whether they load)."""
    return (path / "adapter_model.safetensors").is_file() and (path / "trainer_state.pt").is_file()


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint directory holding an adapter and a trainer state, or None.

    Found by scanning ``checkpoints/iter_*``, so a missing or stale ``checkpoints/latest`` does not hide one.
    Whether its files load is checked by :func:`load_checkpoint`.
    """
    return next((path for path in checkpoint_dirs(run_dir) if is_complete(path)), None)


def load_adapter_file(path: Path) -> dict[str, torch.Tensor]:
    """The LoRA tensors of an adapter file (``adapter_model.safetensors``), read in full.

    Raises:
        CheckpointError: the file is missing, truncated or not safetensors (naming the file).
    """
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except Exception as error:  # noqa: BLE001 - SafetensorError, OSError, ...: all mean "damaged"
        raise CheckpointError(f"{path} is truncated or corrupt ({_first_line(error)})") from None


def load_trainer_state(path: Path) -> dict:
    """The ``{"iteration", "optimizer"}`` dict of a ``trainer_state.pt``.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or lacks those keys (naming the file).
    """
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except Exception as error:  # noqa: BLE001 - zip, pickle and EOF errors: all mean "damaged"
        raise CheckpointError(f"{path} is truncated or corrupt ({_first_line(error)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("iteration"), int) or "optimizer" not in state:
        raise CheckpointError(f"{path} is not a trainer state (no iteration and optimizer)")
    return state


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]
