"""The learner: rollout collection, the GRPO loss, checkpoints and evaluation."""
