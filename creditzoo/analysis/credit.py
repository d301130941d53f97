"""Turning-point rates and credit robustness, recomputed offline from a run's rollout records.

Every iteration's record (``rollouts/iter_*.safetensors``) holds the group ids and the noisy and clean
completion rewards, so any algorithm of the zoo can be replayed on it. :func:`compare_credit` replays one
algorithm on the noisy and on the clean rewards and measures what the noise changed: the turning-point rate
per step under each, how many turning points survive (Jaccard overlap), and how often the advantage keeps
its sign.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from creditzoo.algorithms import get_algorithm
from creditzoo.rollout import Credit, Rollout
from creditzoo.shapes import DEFAULT_SHAPE, get_shape

REQUIRED_TENSORS = ("group_ids", "final_rewards", "final_rewards_clean", "step_rewards", "turning_points")


@dataclass(frozen=True)
class Record:
    """One iteration's stored rollout record; ``shape`` is its rollout shape (the default one for older records)."""

    iteration: int
    prompts: list[str]
    tensors: dict[str, torch.Tensor]
    shape: str = DEFAULT_SHAPE

    @property
    def has_completions(self) -> bool:
        """Whether the record holds completion rewards R_0 .. R_K (runs of algorithms that need them)."""
        return "completion_rewards" in self.tensors and "completion_rewards_clean" in self.tensors

    def completion_rewards(self, *, clean: bool = False) -> torch.Tensor:
        """Completion rewards [B, K+1], noisy (what the run trained on, default) or clean."""
        return self.tensors["completion_rewards_clean" if clean else "completion_rewards"]

    def scores(self, *, clean: bool = False) -> torch.Tensor | None:
        """The recorded rewards credit is computed from, by rollout shape.

        Completion rewards [B, K+1] (chain), branch rewards [B, K, L] (anchor) or leaf rewards [B] (tree); None for
        a chain run without completions.
        """
        suffix = "_clean" if clean else ""
        return self.tensors.get(f"{get_shape(self.shape).score_name}{suffix}")

    def rollout_with(self, scores: torch.Tensor) -> Rollout:
        """The record's :class:`Rollout` with :meth:`scores` replaced by ``scores`` (same shape), e.g. noisy ones."""
        fields = get_shape(self.shape).record_fields(self.tensors, clean=True, scores=scores)
        return Rollout(**fields, iteration=self._iteration())

    def rollout(self, *, clean: bool = False) -> Rollout:
        """The :class:`Rollout` of this iteration, with noisy (default) or clean rewards."""
        return Rollout(**get_shape(self.shape).record_fields(self.tensors, clean=clean), iteration=self._iteration())

    def _iteration(self) -> int | None:
        """The record's 1-based iteration as training gave it to the algorithm; None for a record without one.

        Credit that follows a schedule (sliding depth pruning) reads it, so a replay matches training.
        """
        return self.iteration if self.iteration >= 1 else None


def load_records(run_dir: str | Path) -> list[Record]:
    """Every rollout record of a run, in iteration order.

    Raises:
        ValueError: the directory is missing or empty, holds no records, or a record is corrupt.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise ValueError(f"run directory {str(root)!r} does not exist")
    if not any(root.iterdir()):
        raise ValueError(f"run directory {str(root)!r} is empty")
    paths = sorted(root.glob("rollouts/iter_*.safetensors"))
    if not paths:
        raise ValueError(f"no rollout records under {str(root / 'rollouts')!r}")
    return [read_record(path) for path in paths]


def read_record(path: Path) -> Record:
    """One ``rollouts/iter_*.safetensors`` record, checked for the tensors every study needs.

    Raises:
        ValueError: a truncated or corrupt file, or one that lacks group ids, final rewards or step rewards.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as stream:
            metadata = stream.metadata() or {}
            tensors = {name: stream.get_tensor(name) for name in stream.keys()}  # noqa: SIM118
        record = Record(
            int(metadata["iteration"]), json.loads(metadata["prompts"]), tensors, metadata.get("shape", DEFAULT_SHAPE)
        )
    except Exception as error:  # safetensors raises its own error types for truncated headers and data
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"corrupt or truncated rollout record {str(path)!r}: {detail}") from None
    missing = [name for name in REQUIRED_TENSORS if name not in tensors]
    if missing:
        raise ValueError(f"rollout record {str(path)!r} lacks {', '.join(missing)}")
    return record


def recompute(records: list[Record], algo: str, *, clean: bool = False, **options: object) -> list[Credit]:
    """Replay ``algo`` (with ``options``) on every record's noisy or clean rewards."""
    algorithm = get_algorithm(algo, **options)
    return [algorithm(record.rollout(clean=clean)) for record in records]


@dataclass(frozen=True)
class CreditComparison:
    """What reward noise changed in one algorithm's credit, pooled over iterations.

    Attributes:
        tp_rate_noisy: turning-point rate per step [K] with the noisy rewards the run trained on.
        tp_rate_clean: the same with the clean rewards.
        tp_jaccard: |TP_noisy & TP_clean| / |TP_noisy | TP_clean| (1.0 when both are empty).
        advantage_sign_agreement: share of (sample, step) whose advantage has the same sign under both.
        zero_increment_rate: share of clean increments d_k that are exactly zero (None without completions).
    """

    tp_rate_noisy: list[float]
    tp_rate_clean: list[float]
    tp_jaccard: float
    advantage_sign_agreement: float
    zero_increment_rate: float | None


def compare_credit(records: list[Record], algo: str, **options: object) -> CreditComparison:
    """Replay ``algo`` on noisy and clean rewards and compare (see :class:`CreditComparison`)."""
    noisy = recompute(records, algo, **options)
    clean = recompute(records, algo, clean=True, **options)
    tp_noisy = torch.cat([c.turning_points for c in noisy])  # [N, K]
    tp_clean = torch.cat([c.turning_points for c in clean])  # [N, K]
    union = (tp_noisy | tp_clean).sum()
    jaccard = float((tp_noisy & tp_clean).sum() / union) if union > 0 else 1.0
    adv_noisy = torch.cat([c.advantages for c in noisy])
    adv_clean = torch.cat([c.advantages for c in clean])
    agreement = float((torch.sign(adv_noisy) == torch.sign(adv_clean)).float().mean())
    zero_rate = None
    if "completion_rewards_clean" in records[0].tensors:
        rewards = torch.cat([r.tensors["completion_rewards_clean"] for r in records])
        zero_rate = float((rewards[:, 1:] == rewards[:, :-1]).float().mean())
    return CreditComparison(
        tp_rate_noisy=[round(float(x), 5) for x in tp_noisy.float().mean(0)],
        tp_rate_clean=[round(float(x), 5) for x in tp_clean.float().mean(0)],
        tp_jaccard=jaccard,
        advantage_sign_agreement=agreement,
        zero_increment_rate=zero_rate,
    )
