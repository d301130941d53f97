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

CHECKPOINTS_KEPT = 2


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
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


def read_metrics(run_dir: Path) -> list[dict]:
    """All metrics lines of a run (empty if none)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(run_dir: Path, lines: list[dict]) -> None:
    """Atomically replace metrics.jsonl with ``lines``."""
    atomic_write_bytes(run_dir / "metrics.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode())


def write_record(
    run_dir: Path, iteration: int, record: dict[str, torch.Tensor], prompts: list[str], shape: str = "chain"
) -> None:
    """Save one iteration's rollout record as safetensors; prompts and rollout shape in its metadata."""
    path = run_dir / "rollouts" / f"iter_{iteration:06d}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    save_file(
        record, str(temporary), metadata={"prompts": json.dumps(prompts), "iteration": str(iteration), "shape": shape}
    )
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
    policy.save_pretrained(str(staging))
    export = getattr(policy.get_base_model(), "save_diffusers_lora", None)
    if callable(export):
        from peft import get_peft_model_state_dict

        export(staging, get_peft_model_state_dict(policy), policy.peft_config["default"])
    torch.save(trainer_state, staging / "trainer_state.pt")
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    atomic_write_bytes(root / "latest", name.encode())
    for old in sorted(p for p in root.glob("iter_*") if p.is_dir())[:-CHECKPOINTS_KEPT]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint directory, or None."""
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / "trainer_state.pt").exists() else None
