"""Per-image final evaluations (``eval/final.json``, ``eval/base.json``) and the test set a run was scored on.

A final evaluation written under the paired protocol holds ``protocol`` (how it was sampled, including the
``noise_table`` its initial noise came from), ``task``, ``summary`` and ``images``: one record per test image with
``prompt_index``, ``prompt``, ``category``, ``sample_index`` and one score per metric of the task (GenEval:
``partial_score``, ``strict_accuracy``, ``extra_objects``). Two runs of a task evaluated under one protocol were
scored on the same prompts and the same initial noise for each (prompt, sample index), so their per-image scores
pair up.

Older run directories hold a summary in ``eval/final.json`` (no ``images``): they are read as having no per-image
evaluation, and comparisons fall back to the last in-run test score.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from creditzoo.tasks import Metric


@dataclass(frozen=True)
class ImageScores:
    """One run's per-image evaluation, ordered by (prompt index, sample index).

    Attributes:
        path: the file it was read from.
        protocol: the protocol record (compared between runs as a whole).
        task: the task it was evaluated on.
        keys: [I] (prompt index, sample index) of each image.
        prompts: [I] prompt text of each image.
        categories: [I] category of each image.
        scores: each metric's mean name (:attr:`~creditzoo.tasks.Metric.mean`, e.g. ``partial_score``,
            ``extra_object_rate``) -> [I] per-image values (of its per-image field, e.g. ``extra_objects``).
    """

    path: Path
    protocol: dict
    task: str | None
    keys: list[tuple[int, int]]
    prompts: list[str]
    categories: list[str]
    scores: dict[str, np.ndarray]

    def summary(self, metric: str) -> float:
        """The category-balanced mean of ``metric``: the mean over categories of the per-category mean."""
        values, names = self.scores[metric], np.array(self.categories)
        return float(np.mean([values[names == name].mean() for name in np.unique(names)]))

    def prompt_means(self, metric: str) -> tuple[list[int], list[str], np.ndarray]:
        """Prompt indices [P], their categories [P] and the mean of ``metric`` over each prompt's samples [P]."""
        index = np.array([k[0] for k in self.keys])
        order = sorted(set(index.tolist()))
        category = {k[0]: c for k, c in zip(self.keys, self.categories, strict=True)}
        means = np.array([self.scores[metric][index == p].mean() for p in order])
        return order, [category[p] for p in order], means


def read_image_scores(path: str | Path, metrics: Sequence[Metric]) -> ImageScores | None:
    """A per-image evaluation file, or None when it is absent or an older summary without ``images``.

    Args:
        path: the file (``eval/final.json``, ``eval/base.json``).
        metrics: the task's metrics: each one whose per-image field every record holds is read.

    Raises:
        ValueError: a file that is not JSON, or whose ``images`` records lack a field (naming the file).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not data["images"]:
        return None
    try:
        images = sorted(data["images"], key=lambda r: (int(r["prompt_index"]), int(r["sample_index"])))
        scores = {
            metric.mean: np.array([float(r[metric.name]) for r in images])
            for metric in metrics
            if all(r.get(metric.name) is not None for r in images)
        }
        return ImageScores(
            path=path,
            protocol=dict(data.get("protocol") or {}),
            task=data.get("task"),
            keys=[(int(r["prompt_index"]), int(r["sample_index"])) for r in images],
            prompts=[str(r.get("prompt", "")) for r in images],
            categories=[str(r.get("category", "all")) for r in images],
            scores=scores,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{str(path)!r}: an image record lacks a field or holds a non-number ({error})") from None


def evaluation_set_name(config: dict) -> str:
    """The test set a run was evaluated on: the ``--prompts`` test file, or the task's own test prompts."""
    prompts = config.get("prompts")
    if not prompts:
        return f"the {config.get('env')} task's own test prompts"
    return str(prompts).split(",")[-1]


@dataclass(frozen=True)
class PairedEvaluation:
    """Per-image final evaluations of every run of a comparison, all under one protocol.

    Attributes:
        protocol: the shared protocol record.
        runs: run directory (as a string) -> its :class:`ImageScores`.
        base: the base model's per-image evaluation (``eval/base.json`` of the first run holding one), or None.
    """

    protocol: dict
    runs: dict[str, ImageScores]
    base: ImageScores | None


def paired_evaluation(run_paths: list[Path], metrics: Sequence[Metric]) -> tuple[PairedEvaluation | None, str]:
    """The per-image final evaluations when every run has one under the same protocol, else None and why.

    Args:
        run_paths: the run directories.
        metrics: their task's metrics (:func:`~creditzoo.analysis.runs.task_metrics`).

    Returns:
        (the paired evaluation or None, a sentence saying which scores the comparison uses and why).
    """
    found = {str(path): read_image_scores(path / "eval" / "final.json", metrics) for path in run_paths}
    missing = [p for p, s in found.items() if s is None]
    fallback = "the last in-run test score of each run (metrics.jsonl)"
    if missing:
        return None, f"{fallback}: {len(missing)} of {len(found)} runs have no per-image eval/final.json"
    protocols = {json.dumps(s.protocol, sort_keys=True) for s in found.values()}
    if len(protocols) > 1:
        return None, f"{fallback}: the runs' eval/final.json use {len(protocols)} different protocols, not mixed"
    keys = {tuple(s.keys) for s in found.values()}
    if len(keys) > 1:
        return None, f"{fallback}: the runs' eval/final.json cover different (prompt, sample) sets, not mixed"
    first = next(iter(found.values()))
    bases = (read_image_scores(Path(p) / "eval" / "base.json", metrics) for p in found)
    base = next((b for b in bases if b), None)
    if base is not None and (json.dumps(base.protocol, sort_keys=True) not in protocols or base.keys != first.keys):
        base = None
    table = first.protocol.get("noise_table", "?")
    steps, samples = first.protocol.get("num_steps", "?"), first.protocol.get("samples_per_prompt", "?")
    reason = (
        f"the final evaluation eval/final.json ({len(first.keys)} images per run, {steps} steps, {samples} samples "
        f"per prompt, noise table {table}): every run scored on the same prompts and noise, so differences pair up"
    )
    return PairedEvaluation(protocol=first.protocol, runs=found, base=base), reason
