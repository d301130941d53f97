"""The algorithm and the reward-noise spec are resolved once, on the configuration, on their way to the kernel."""

from __future__ import annotations

import dataclasses

import pytest

import creditzoo.algorithms
import creditzoo.rewards.noise
from creditzoo.learner.config import TrainConfig

pytestmark = pytest.mark.usefixtures("tiny_task")

TINY = dict(prompts_per_iteration=2, group_size=2, num_steps=3, lora_rank=2, learning_rate=0.01, clip_range=0.2)
QUICK_EVAL = dict(eval_steps=2, eval_min_images_per_category=1, final_eval_steps=2, final_eval_samples=1)


def _counting(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[object]:
    """Replace ``module.name`` with a wrapper that records each call's first argument; return the record."""
    calls: list[object] = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args[0] if args else None)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_run_resolves_its_algorithm_and_noise_spec_once(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from creditzoo.learner.run import train

    # every get_algorithm call, whatever name it was imported under, dry-runs the algorithm once (_validate)
    resolved = _counting(monkeypatch, creditzoo.algorithms, "_validate")
    parsed = _counting(monkeypatch, creditzoo.rewards.noise, "parse_noise_spec")
    config = TrainConfig.for_task("tiny", **TINY, **QUICK_EVAL, iterations=1, reward_noise="gaussian:0.05")
    assert (len(resolved), parsed) == (1, ["gaussian:0.05"])  # checked while the configuration was built
    assert config.algorithm.name == "tp_grpo_strict" and config.algorithm.options == {"std_mode": "group"}
    assert str(config.noise_spec) == "gaussian:0.05"
    train(config, tmp_path / "run")  # the learner, the preflight and the reward read the configuration's
    assert (len(resolved), len(parsed)) == (1, 1)


def test_each_configuration_resolves_its_own() -> None:
    config = TrainConfig.for_task("tiny", **TINY, algo="flow_grpo")
    changed = dataclasses.replace(config, algo="incremental")
    assert (config.algorithm.name, changed.algorithm.name) == ("flow_grpo", "incremental")
    assert config.noise_spec is None and TrainConfig.for_task("tiny", **TINY, reward_noise="none").noise_spec is None
    assert config == TrainConfig.for_task("tiny", **TINY, algo="flow_grpo")  # the resolved values are no fields
    assert "algorithm" not in config.to_dict() and "noise_spec" not in config.to_dict()
