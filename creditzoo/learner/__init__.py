"""The learner: rollout collection, the GRPO loss, checkpoints and evaluation.

``from creditzoo.learner import TrainConfig, GRPOLearner, train`` (the README's import) works; the three are
loaded on first use, so that importing a light submodule (``creditzoo.learner.tracking``) does not load the
model backends and the training loop.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from creditzoo.learner.config import TrainConfig
    from creditzoo.learner.grpo import GRPOLearner
    from creditzoo.learner.run import train

EXPORTS = {
    "TrainConfig": "creditzoo.learner.config",
    "GRPOLearner": "creditzoo.learner.grpo",
    "train": "creditzoo.learner.run",
}
"""Public name -> the module that defines it."""

__all__ = ["GRPOLearner", "TrainConfig", "train"]


def __getattr__(name: str) -> Any:
    if name in EXPORTS:
        return getattr(importlib.import_module(EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
