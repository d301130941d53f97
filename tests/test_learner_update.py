"""The learner's pieces on their own: the LoRA set-up, the minibatch plan, the loss of one step, the statistics.

Each is checked against a case whose answer is known by construction or worked out by hand, not against the
learner that uses it; tests/test_learner.py and tests/test_distributed.py check the learner as a whole.
"""

from __future__ import annotations

import pytest
import torch
from tiny_model import TinyFlowModel

from creditzoo.learner.distributed import Processes
from creditzoo.learner.lora import adapter_state, add_lora, load_adapter_state, lora_shape, lora_targets
from creditzoo.learner.loss import PolicyLoss, StepLoss, step_loss
from creditzoo.learner.update import MinibatchPlan, StepSums, UpdateStatistics, kept_rows, minibatch_plan
from creditzoo.models.base import FlowModel
from creditzoo.sampling.sde import SdeStep

# ------------------------------------------------------------------------------------------------- LoRA


class Declared(FlowModel):
    """A model that only declares LoRA defaults (SD3's: rank 32, alpha 64)."""

    sample_shape = (1,)
    default_lora_rank = 32
    default_lora_alpha = 64.0


@pytest.mark.parametrize(
    ("rank", "alpha", "expected"),
    [
        (None, None, (32, 64.0)),  # the model's pair
        (8, None, (8, 8.0)),  # another rank: the model's alpha does not apply, alpha = rank (scale 1)
        (32, None, (32, 64.0)),  # the model's rank named explicitly keeps its alpha
        (None, 5.0, (32, 5.0)),  # a named alpha always wins
        (4, 2.0, (4, 2.0)),
    ],
)
def test_lora_shape_fills_what_the_run_leaves_out_from_the_model(rank, alpha, expected) -> None:
    assert lora_shape(Declared(), rank, alpha) == expected


def test_lora_shape_of_a_model_without_an_alpha_is_scale_one() -> None:
    assert lora_shape(FlowModel()) == (16, 16.0)  # the base defaults: rank 16, alpha None


def test_a_model_without_lora_targets_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="FlowModel has no lora_target_modules") as error:
        lora_targets(FlowModel())
    assert "\n" not in str(error.value)


def test_add_lora_trains_only_the_adapter_and_is_seeded() -> None:
    policy = add_lora(TinyFlowModel(), seed=1, rank=2)
    trainable = {name for name, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    targeted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable}
    assert targeted == set(TinyFlowModel.lora_target_modules)
    same, other = add_lora(TinyFlowModel(), seed=1, rank=2), add_lora(TinyFlowModel(), seed=2, rank=2)
    a, b, c = adapter_state(policy), adapter_state(same), adapter_state(other)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert any(not torch.equal(a[name], c[name]) for name in a)  # the seed reaches the Gaussian init


def test_adapter_state_round_trips_into_a_different_adapter() -> None:
    source = add_lora(TinyFlowModel(), seed=1, rank=2)
    state = {name: torch.randn_like(value) for name, value in adapter_state(source).items()}  # B nonzero too
    target = add_lora(TinyFlowModel(), seed=2, rank=2)
    assert any(not torch.equal(state[name], value) for name, value in adapter_state(target).items())
    load_adapter_state(target, state)
    loaded = adapter_state(target)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[name], state[name]) for name in state)
    with pytest.raises(ValueError, match="unexpected LoRA keys"):
        load_adapter_state(target, {**state, "base_model.model.nowhere.lora_A.weight": torch.zeros(2, 2)})


# ------------------------------------------------------------------------------------------ minibatch plan


def test_kept_rows_are_the_groups_with_some_nonzero_advantage() -> None:
    group_ids = torch.tensor([0, 0, 1, 1, 2, 2])
    advantages = torch.zeros(6, 3)
    advantages[3, 2] = -0.5  # one entry of group 1
    advantages[4] = 1.0  # a whole row of group 2
    assert kept_rows(advantages, group_ids).tolist() == [2, 3, 4, 5]
    assert kept_rows(torch.zeros(6, 3), group_ids).numel() == 0


def plan_of(kept: torch.Tensor, **options) -> MinibatchPlan:
    settings = {"epochs": 2, "minibatches": 3, "seed": 11, "num_steps": 4} | options
    return minibatch_plan(kept, **settings)


def test_each_epoch_partitions_the_kept_rows_into_near_equal_minibatches() -> None:
    kept = torch.tensor([0, 1, 2, 5, 6, 7, 8, 9])
    plan = plan_of(kept)
    assert [(m.epoch, m.part) for m in plan.minibatches] == [(e, p) for e in range(2) for p in range(3)]
    for epoch in range(2):
        parts = [m for m in plan.minibatches if m.epoch == epoch]
        assert [m.size for m in parts] == [3, 3, 2]  # 8 rows in 3 parts: the first ones take one more
        rows = torch.cat([m.rows for m in parts])
        assert sorted(rows.tolist()) == kept.tolist()  # every kept row exactly once
    orders = [torch.cat([m.rows for m in plan.minibatches if m.epoch == e]).tolist() for e in range(2)]
    assert orders[0] != orders[1]  # a fresh shuffle per epoch
    assert orders == [torch.cat([m.rows for m in plan_of(kept).minibatches if m.epoch == e]).tolist() for e in (0, 1)]
    for minibatch in plan.minibatches:  # no step subset: every row trains every step, all on the one process
        assert all(torch.equal(t, minibatch.rows) for t in minibatch.trained)
        assert all(torch.equal(t, minibatch.rows) for t in minibatch.local)
    assert plan.steps_per_sample == 4


def test_fewer_rows_than_minibatches_leaves_the_empty_ones_out() -> None:
    plan = plan_of(torch.tensor([4, 7]), epochs=1, minibatches=3)
    assert [m.part for m in plan.minibatches] == [0, 1] and [m.size for m in plan.minibatches] == [1, 1]


def test_nothing_kept_plans_no_minibatch() -> None:
    plan = plan_of(torch.zeros(0, dtype=torch.int64))
    assert plan.minibatches == () and plan.kept.numel() == 0


def test_a_step_mask_trains_only_the_masked_rows_of_each_step() -> None:
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(6, 4, dtype=torch.bool)
    for row in range(6):  # 2 of 4 steps per row, as train_step_mask draws them
        mask[row, torch.randperm(4, generator=generator)[:2]] = True
    plan = plan_of(torch.arange(6), mask=mask)
    assert plan.steps_per_sample == 2
    for minibatch in plan.minibatches:
        for k in range(4):
            expected = [row for row in minibatch.rows.tolist() if mask[row, k]]  # in the minibatch's order
            assert minibatch.trained[k].tolist() == expected


@pytest.mark.parametrize("processes", [2, 3])
def test_every_process_plans_the_same_minibatches_and_their_local_rows_partition_them(processes: int) -> None:
    batch, kept = 12, torch.tensor([0, 1, 2, 6, 7, 8, 9, 10, 11])  # 4 groups of 3; group 1 dropped
    mask = torch.rand(batch, 4, generator=torch.Generator().manual_seed(1)) < 0.5
    single = plan_of(kept, mask=mask)
    block = batch // processes
    plans = [plan_of(kept, mask=mask, local=slice(r * block, (r + 1) * block)) for r in range(processes)]
    for rank, plan in enumerate(plans):
        assert len(plan.minibatches) == len(single.minibatches)
        for mine, one in zip(plan.minibatches, single.minibatches, strict=True):
            assert torch.equal(mine.rows, one.rows)  # the global partition does not depend on N
            assert all(torch.equal(a, b) for a, b in zip(mine.trained, one.trained, strict=True))
            assert all(((t >= rank * block) & (t < (rank + 1) * block)).all() for t in mine.local)
    for index, one in enumerate(single.minibatches):
        for k in range(4):
            union = torch.cat([plan.minibatches[index].local[k] for plan in plans])
            assert sorted(union.tolist()) == sorted(one.trained[k].tolist())  # each trained row on one process


# ----------------------------------------------------------------------------------------- step loss


def sde_step(log_prob: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> SdeStep:
    return SdeStep(prev_sample=torch.zeros_like(mean), log_prob=log_prob, mean=mean, std=std)


def test_step_loss_by_hand() -> None:
    log_prob = torch.log(torch.tensor([1.5, 0.5])).requires_grad_()
    mean = torch.ones(2, 3, requires_grad=True)
    step = sde_step(log_prob, mean, torch.full((2, 1), 0.5))
    reference = sde_step(torch.zeros(2), torch.zeros(2, 3), torch.full((2, 1), 0.5))
    options = {"clip_range": 0.2, "minibatch_size": 4, "weights": torch.tensor([2.0, 1.0])}
    out = step_loss(step, torch.zeros(2), torch.tensor([1.0, -2.0]), reference=reference, beta=0.1, **options)
    # row 0: ratio 1.5, A = 1: max(-1.5, -1.2) = -1.2, weight 2 -> -2.4
    # row 1: ratio 0.5, A = -2: max(1.0, 1.6) = 1.6, weight 1 -> 1.6; surrogate (-2.4 + 1.6) / M = -0.2 with M = 4
    # KL: every element (1 - 0)^2 / (2 * 0.25) = 2, times this process's share 2 / 4 -> 1.0; beta 0.1 -> 0.1
    assert out.surrogate.loss.item() == pytest.approx(-0.2)
    assert out.kl.item() == pytest.approx(1.0)
    assert out.loss.item() == pytest.approx(-0.1)
    assert out.surrogate.clip_fraction.item() == pytest.approx(1.0)  # |0.5| and |-0.5| both exceed 0.2
    out.loss.backward()
    assert log_prob.grad is not None and mean.grad is not None  # both terms reach the policy
    plain = step_loss(step, torch.zeros(2), torch.tensor([1.0, -2.0]), **options)  # no reference: no KL
    assert plain.kl is None and plain.loss.item() == pytest.approx(-0.2)


def test_step_losses_of_the_processes_add_up_to_the_minibatch_loss() -> None:
    generator = torch.Generator().manual_seed(3)
    log_prob, old = torch.randn(6, generator=generator) * 0.1, torch.randn(6, generator=generator) * 0.1
    advantages, weights = torch.randn(6, generator=generator), torch.rand(6, generator=generator)
    mean, ref_mean = torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator)
    std = torch.full((6, 1), 0.3)

    def on(rows: slice) -> StepLoss:
        step, reference = (
            sde_step(log_prob[rows], mean[rows], std[rows]),
            sde_step(old[rows], ref_mean[rows], std[rows]),
        )
        options = {"clip_range": 0.05, "minibatch_size": 6, "weights": weights[rows], "beta": 0.3}
        return step_loss(step, old[rows], advantages[rows], reference=reference, **options)

    whole = on(slice(0, 6))
    parts = [on(slice(0, 2)), on(slice(2, 6))]
    # the same float32 terms summed in another grouping: a few float32 ulps of O(1) numbers
    assert sum(float(p.loss) for p in parts) == pytest.approx(float(whole.loss), abs=1e-6)
    assert sum(float(p.kl) for p in parts) == pytest.approx(float(whole.kl), abs=1e-6)


# ---------------------------------------------------------------------------------------- statistics


def fake_step(loss: float, kl: float | None, clip_fraction: float, ratio: list[float]) -> StepLoss:
    surrogate = PolicyLoss(
        loss=torch.tensor(loss), ratio=torch.tensor(ratio), clip_fraction=torch.tensor(clip_fraction)
    )
    return StepLoss(loss=torch.tensor(loss), kl=None if kl is None else torch.tensor(kl), surrogate=surrogate)


def test_statistics_by_hand() -> None:
    kept = torch.arange(3)
    plan = plan_of(kept, epochs=1, minibatches=1, num_steps=3)
    sums = StepSums.zeros(3)
    sums.count(0, 2)  # step 0: 2 rows (one clipped); step 1: no row (a step subset); step 2: 1 row
    sums.add(0, 2, fake_step(0.5, 0.25, 0.5, [1.25, 0.5]))
    sums.count(2, 1)
    sums.add(2, 1, fake_step(-0.25, 0.75, 0.0, [1.125]))
    sums.evals = 9
    sums.reduce(Processes())  # one process: unchanged
    statistics = UpdateStatistics(with_kl=True)
    statistics.add(plan.minibatches[0], sums, torch.tensor(2.0))
    summary = statistics.summary(plan, batch_size=4, window_start=1, window_size=3)
    assert summary == {
        "loss": pytest.approx((0.5 - 0.25) / 2),  # the trained steps only
        "kl": pytest.approx((0.25 + 0.75) / 2),
        "clip_fraction": pytest.approx((1 / 2 + 0 / 1) / 2),  # mean over the steps of clipped / trained rows
        "grad_norm": 2.0,
        "ratio_dev_first_update": 0.5,  # max |ratio - 1| of the first minibatch
        "ratio_dev_max": 0.5,
        "kept_fraction": 3 / 4,
        "window_start": 1,
        "trained_step_fraction": 1.0,
        "train_evals": 9,
    }
    without_kl = UpdateStatistics(with_kl=False)
    without_kl.add(plan.minibatches[0], sums, torch.tensor(2.0))
    assert without_kl.summary(plan, 4, 1, 3)["kl"] is None


def test_statistics_of_an_update_that_trained_nothing_are_none() -> None:
    plan = plan_of(torch.zeros(0, dtype=torch.int64))
    summary = UpdateStatistics(with_kl=True).summary(plan, batch_size=6, window_start=0, window_size=4)
    assert {name: summary[name] for name in ("loss", "kl", "clip_fraction", "grad_norm")} == dict.fromkeys(
        ("loss", "kl", "clip_fraction", "grad_norm")
    )
    assert summary["ratio_dev_first_update"] is None and summary["ratio_dev_max"] is None
    assert summary["kept_fraction"] == 0 and summary["train_evals"] == 0
