"""Extending the zoo from outside the package through its records only: one AlgorithmSpec, one Backend.

A researcher's algorithm and model live in their own modules (here this test module); registering each is one
entry in ``ALGORITHMS`` / ``MODELS``. Nothing else in creditzoo is touched, and the command line trains with them.
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_model import TRAIN_ARGS, TinyFlowModel
from typer.testing import CliRunner

from creditzoo.algorithms import ALGORITHMS, AlgorithmSpec, get_algorithm
from creditzoo.cli import app
from creditzoo.models import MODELS, Backend, load_model
from creditzoo.rollout import Credit, Rollout

LOADED: list[tuple[str | None, torch.dtype]] = []


def last_step_only(rollout: Rollout, *, scale: float = 1.0, std_mode: str = "none") -> Credit:
    """A made-up scheme: the terminal reward, centred per group, credited to the last window step only.

    ``std_mode`` is the option every algorithm takes from the learner; this scheme only centres ("none").
    """
    if std_mode not in ("group", "global", "none"):
        raise ValueError(f"unknown std_mode {std_mode!r}")
    rewards = rollout.final_rewards  # [B]
    groups = int(rollout.group_ids.max()) + 1
    sums = torch.zeros(groups).index_add_(0, rollout.group_ids, rewards)
    counts = torch.zeros(groups).index_add_(0, rollout.group_ids, torch.ones_like(rewards))
    means = sums / counts  # [G]
    advantages = torch.zeros(rewards.numel(), rollout.num_steps)  # [B, K]
    advantages[:, -1] = scale * (rewards - means[rollout.group_ids])
    return Credit(
        step_rewards=advantages.clone(),
        turning_points=torch.zeros_like(advantages, dtype=torch.bool),
        advantages=advantages,
    )


LAST_STEP_ONLY = AlgorithmSpec(
    fn=last_step_only,
    shape="chain",
    needs_completions=False,
    paper="this test",
    cost="0",
    description="terminal reward, centred per group, on the last window step only",
)


def load_tiny(path: str | None, *, device: torch.device, dtype: torch.dtype) -> TinyFlowModel:
    """A backend loader: the test's tiny flow model (a path would name saved weights)."""
    LOADED.append((path, dtype))
    return TinyFlowModel().to(device=device, dtype=dtype)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch, tiny_task: None) -> None:
    monkeypatch.setitem(ALGORITHMS, "last_step_only", LAST_STEP_ONLY)
    monkeypatch.setitem(MODELS, "tinybackend", Backend("test_extension_records:load_tiny", False, "tinybackend"))
    LOADED.clear()


def test_an_algorithm_and_a_backend_from_outside_train_through_the_command_line(registered, tmp_path) -> None:
    algorithm = get_algorithm("last_step_only", scale=2.0)
    rollout = Rollout(
        group_ids=torch.tensor([0, 0, 1, 1]), final_rewards=torch.tensor([1.0, 3.0, 5.0, 5.0]), num_steps=2
    )
    assert algorithm(rollout).advantages.tolist() == [[0.0, -2.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0]]
    assert (algorithm.rollout_shape, algorithm.needs_completions) == ("chain", False)
    assert isinstance(load_model("tinybackend", device=torch.device("cpu")), TinyFlowModel)
    run = tmp_path / "run"
    args = [*TRAIN_ARGS, "--algo", "last_step_only", "--model", "tinybackend", "--iterations", "1"]
    result = CliRunner().invoke(app, ["train", *args, "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    assert LOADED and LOADED[-1] == (None, torch.float32)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["iteration"] == 1
    assert lines[-1]["completion_evals"] == 0  # the record says no completions: none were paid for
    listing = CliRunner().invoke(app, ["algos"])
    assert "last_step_only" in listing.output and "on the last window step only" in listing.output


def test_a_record_without_its_required_fields_fails_at_registration() -> None:
    with pytest.raises(TypeError):
        AlgorithmSpec(fn=last_step_only, shape="chain", paper="x", cost="0", description="y")  # no needs_completions
    with pytest.raises(ValueError, match="unknown rollout shape 'ring'; valid: chain, anchor, tree"):
        AlgorithmSpec(last_step_only, "ring", False, "x", "0", "y")
    with pytest.raises(ValueError, match="'package.module:function'"):
        Backend("load_tiny", needs_path=False, example="tinybackend")
