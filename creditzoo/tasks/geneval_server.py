"""GenEval on real images: the user's GenEval prompt files, scored by a GenEval reward server.

GenEval (Ghosh et al., "GenEval: An Object-Focused Framework for Evaluating Text-to-Image Alignment", NeurIPS
2023) checks objects, counts, colours and positions with Mask2Former and a CLIP colour classifier; Flow-GRPO
(Liu et al., 2025) trains SD3.5-M on its partial score, served by a separate reward server. This task trains
and evaluates through that server (:mod:`creditzoo.rewards.geneval_server`); it has no prompts and no model of
its own:

    export CREDITZOO_GENEVAL_URL=http://127.0.0.1:18085      # a server you run or trust: the protocol pickles
    creditzoo train --env geneval_server --model sd3:/models/sd3.5-medium --prompts TRAIN.jsonl,TEST.jsonl

Rewards: ``geneval`` (the partial score, Flow-GRPO's training reward), ``geneval_correct`` (GenEval's
correctness) and ``geneval_strict`` (correctness with exact counts). Evaluation reports, per GenEval tag,
``strict_accuracy`` (GenEval's correctness: what GenEval reports), ``partial_score`` and
``exact_count_accuracy``. (The embedded ``geneval`` task is the shapes world scored exactly on the CPU.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from creditzoo.rewards.geneval_server import NEEDS_METADATA, GenEvalServerReward, client_from_environment
from creditzoo.tasks import UNIT, Metric, Task

if TYPE_CHECKING:
    from creditzoo.tasks.prompts import PromptSet


def _needs_prompt_files(*_: object) -> list[str]:
    raise ValueError(f"the geneval_server task has no prompts of its own; {NEEDS_METADATA}")


class ServerScore:
    """The task's evaluation scorer; works once bound to a prompt set (:meth:`for_prompts`)."""

    def for_prompts(self, prompts: PromptSet) -> Callable[[torch.Tensor, list[str]], dict[str, torch.Tensor]]:
        """The scorer for ``prompts``: images [B, 3, H, W] and prompts -> float32 [B] scores by name.

        Raises:
            ValueError: the prompts carry no GenEval metadata, or ``$CREDITZOO_GENEVAL_URL`` is not set.
        """
        if not prompts.metadata:
            raise ValueError(NEEDS_METADATA)
        reward = GenEvalServerReward(client_from_environment(), prompts.metadata, kind="correct")

        def score(images: torch.Tensor, batch: list[str]) -> dict[str, torch.Tensor]:
            scores = reward.scores(images, batch)
            return {
                "partial_score": scores.partial,
                "strict_accuracy": scores.correct,
                "exact_count_accuracy": scores.strict,
            }

        return score

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Always fails: the scorer needs its prompts' metadata first."""
        raise ValueError(NEEDS_METADATA)


TASK = Task(
    name="geneval_server",
    description="GenEval on a GenEval reward server (needs --model, --prompts *.jsonl, $CREDITZOO_GENEVAL_URL)",
    train_prompts=_needs_prompt_files,
    test_prompts=_needs_prompt_files,
    category=_needs_prompt_files,  # type: ignore[arg-type]
    score=ServerScore(),
    metrics=(
        Metric("partial_score", "the server's partial score (Flow-GRPO's GenEval training reward)", bounds=UNIT),
        Metric("strict_accuracy", "GenEval's correctness: what GenEval reports", correctness=True, bounds=UNIT),
        Metric("exact_count_accuracy", "GenEval's correctness with exact counts", correctness=True, bounds=UNIT),
    ),
    primary_metric="partial_score",
    rewards={
        "geneval": "creditzoo.rewards.geneval_server:PARTIAL",
        "geneval_correct": "creditzoo.rewards.geneval_server:CORRECT",
        "geneval_strict": "creditzoo.rewards.geneval_server:STRICT",
    },
    gym_id="creditzoo/GenEvalServer-v0",
)
