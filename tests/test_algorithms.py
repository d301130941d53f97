"""Credit-assignment algorithms: the shared contract, slow references written from the spec, pinned values."""

import dataclasses
import math
import re

import pytest
import torch

from creditzoo.algorithms import ALGORITHMS, get_algorithm
from creditzoo.algorithms._group import group_advantages
from creditzoo.rollout import Credit, Rollout, shape_mismatch

NAMES = list(ALGORITHMS)
SHAPES = {name: get_algorithm(name).rollout_shape for name in NAMES}
CHAIN = [name for name in NAMES if SHAPES[name] == "chain"]
REFERENCE = ["flow_grpo", "incremental", "tp_grpo", "tp_grpo_strict", "tp_grpo_noinit", "tp_grpo_strict_noinit"]


def random_rollout(seed: int, groups: int = 4, group_size: int = 5, steps: int = 6, *, ties: bool = False) -> Rollout:
    gen = torch.Generator().manual_seed(seed)
    batch = groups * group_size
    if ties:  # coarse rewards: many zero increments and equal values
        rewards = torch.randint(0, 4, (batch, steps + 1), generator=gen).float() / 4
    else:
        rewards = torch.rand(batch, steps + 1, generator=gen)
    labels = torch.randperm(1000, generator=gen)[:groups]
    group_ids = labels.repeat_interleave(group_size)[torch.randperm(batch, generator=gen)]
    return Rollout(group_ids=group_ids, completion_rewards=rewards)


def rollout_for(name: str, seed: int, *, ties: bool = False) -> Rollout:
    """A random rollout of the shape algorithm ``name`` needs (4 groups, shuffled rows, arbitrary labels)."""
    shape = SHAPES[name]
    if shape == "chain":
        return random_rollout(seed, ties=ties)
    gen = torch.Generator().manual_seed(seed)
    if shape == "anchor":
        groups, size, steps = 4, 5, 6
        width = len(get_algorithm(name).bound_options.get("granularities", (0,)))
        rewards = torch.rand(groups * size, steps, width, generator=gen)
        if ties:
            rewards = (rewards * 4).floor() / 4
        labels = torch.randperm(1000, generator=gen)[:groups].repeat_interleave(size)
        perm = torch.randperm(groups * size, generator=gen)
        return Rollout(group_ids=labels[perm], shape="anchor", branch_rewards=rewards[perm])
    # trees: rows must stay in branch order inside a group, so groups are interleaved, never shuffled within
    splits, steps, groups = (0, 2), 5, 4
    leaves = 2 ** len(splits)
    rewards = torch.rand(groups * leaves, generator=gen)
    if ties:
        rewards = (rewards * 4).floor() / 4
    labels = torch.randperm(1000, generator=gen)[:groups]
    return Rollout(
        group_ids=labels.repeat(leaves),  # row r belongs to tree r % groups, leaf r // groups
        shape="tree",
        final_rewards=rewards,
        num_steps=steps,
        split_steps=splits,
        log_probs=torch.randn(groups * leaves, steps, generator=gen),
    )


def permute(rollout: Rollout, perm: torch.Tensor) -> Rollout:
    """The same rollout with rows in order ``perm`` (trees: ``perm`` must keep each group's leaf order)."""

    def pick(value):
        return None if value is None else value[perm]

    if rollout.shape == "chain":
        return Rollout(group_ids=rollout.group_ids[perm], completion_rewards=rollout.completion_rewards[perm])
    return dataclasses.replace(
        rollout,
        group_ids=rollout.group_ids[perm],
        branch_rewards=pick(rollout.branch_rewards),
        final_rewards=pick(rollout.final_rewards),
        log_probs=pick(rollout.log_probs),
    )


def shuffle_order(rollout: Rollout, seed: int) -> torch.Tensor:
    """A random row order; for trees a random order of whole trees (each keeps its leaf order)."""
    gen = torch.Generator().manual_seed(seed)
    B = rollout.batch_size
    if rollout.shape != "tree":
        return torch.randperm(B, generator=gen)
    groups = int(rollout.group_ids.unique().numel())
    tree_order = torch.randperm(groups, generator=gen)
    leaves = B // groups
    return (tree_order.unsqueeze(0) + groups * torch.arange(leaves).unsqueeze(1)).flatten()


def relabel(rollout: Rollout) -> Rollout:
    return dataclasses.replace(rollout, group_ids=rollout.group_ids * 7 - 3)


# ----------------------------------------------------------------- slow references, written from the spec


def sign(x: float) -> int:
    return (x > 0) - (x < 0)


def reference_step_rewards(name: str, R: list[list[float]], *, balance: bool = True, balance_key: str = "r_agg"):
    """Loop-based docs/math.md section 3, one trajectory and one step at a time."""
    B, K = len(R), len(R[0]) - 1
    if name == "flow_grpo":
        return [[R[b][K]] * K for b in range(B)], [[False] * K for _ in range(B)]
    d = [[R[b][k + 1] - R[b][k] for k in range(K)] for b in range(B)]
    if name == "incremental":
        return d, [[False] * K for _ in range(B)]
    strict = "strict" in name
    initial = not name.endswith("noinit")
    tp = [[False] * K for _ in range(B)]
    for b in range(B):
        g = sign(R[b][K] - R[b][0])
        s = [sign(d[b][k]) * g for k in range(K)]
        for k in range(K):
            if k == 0:
                marked = initial and s[0] > 0
            else:
                marked = s[k - 1] < 0 and s[k] > 0
            if strict:
                consistent = sign(d[b][k]) * sign(R[b][K] - R[b][k + 1]) > 0
                marked = (initial and consistent) if k == 0 else (marked and consistent)
            if R[b][K] - R[b][k] == 0:
                marked = False
            tp[b][k] = marked
    if balance:

        def key(b, k):
            return R[b][K] - R[b][k] if balance_key == "r_agg" else R[b][K] - R[b][0]

        pos = [(b, k) for b in range(B) for k in range(K) if tp[b][k] and key(b, k) > 0]
        neg = [(b, k) for b in range(B) for k in range(K) if tp[b][k] and key(b, k) < 0]
        if pos and neg:
            m = min(len(pos), len(neg))
            keep = set()
            for members in (pos, neg):
                # sorted() is stable: equal |key| keep flattened order, as the vectorised version documents
                keep.update(sorted(members, key=lambda bk: -abs(key(*bk)))[:m])
            tp = [[(b, k) in keep for k in range(K)] for b in range(B)]
    rewards = [[(R[b][K] - R[b][k]) if tp[b][k] else d[b][k] for k in range(K)] for b in range(B)]
    return rewards, tp


def reference_advantages(values: list[list[float]], groups: list[int], std_mode: str, eps: float = 1e-4):
    B, K = len(values), len(values[0])
    out = [[0.0] * K for _ in range(B)]
    for k in range(K):
        column = [values[b][k] for b in range(B)]
        overall_mean = sum(column) / B
        global_std = math.sqrt(sum((x - overall_mean) ** 2 for x in column) / B)
        for g in set(groups):
            members = [b for b in range(B) if groups[b] == g]
            xs = [values[b][k] for b in members]
            mean = sum(xs) / len(xs)
            std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
            scale = {"group": std + eps, "global": global_std + eps, "none": 1.0}[std_mode]
            for b in members:
                out[b][k] = (values[b][k] - mean) / scale
    return out


def assert_matches_loop_reference(credit, rollout, expected_rewards, expected_tp, seed: int) -> None:
    """Turning points exactly, step rewards to 1e-6, and group advantages recomputed by the loop reference."""
    assert credit.turning_points.tolist() == expected_tp, f"seed {seed}"
    torch.testing.assert_close(
        credit.step_rewards.double(), torch.tensor(expected_rewards, dtype=torch.float64), atol=1e-6, rtol=0
    )
    expected_adv = reference_advantages(credit.step_rewards.double().tolist(), rollout.group_ids.tolist(), "group")
    torch.testing.assert_close(
        credit.advantages.double(), torch.tensor(expected_adv, dtype=torch.float64), atol=2e-4, rtol=1e-4
    )


# ------------------------------------------------------------------------------------ the shared contract


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("std_mode", ["group", "global", "none"])
def test_contract(name: str, std_mode: str) -> None:
    rollout = rollout_for(name, 0)
    tensors = {k: v.clone() for k, v in vars(rollout).items() if isinstance(v, torch.Tensor)}
    algorithm = get_algorithm(name, std_mode=std_mode)
    credit = algorithm(rollout)
    B, K = rollout.batch_size, rollout.num_steps
    assert isinstance(credit, Credit)
    assert credit.step_rewards.shape == credit.turning_points.shape == credit.advantages.shape == (B, K)
    assert credit.step_rewards.dtype == credit.advantages.dtype == torch.float32
    assert credit.turning_points.dtype == torch.bool
    assert torch.isfinite(credit.step_rewards).all() and torch.isfinite(credit.advantages).all()
    if credit.weights is not None:
        assert credit.weights.shape == (B, K) and (credit.weights > 0).all()
    # inputs unchanged
    assert all(torch.equal(getattr(rollout, k), v) for k, v in tensors.items())
    # shuffling samples (trees: whole trees) shuffles outputs alike
    perm = shuffle_order(rollout, 1)
    shuffled = algorithm(permute(rollout, perm))
    torch.testing.assert_close(shuffled.step_rewards, credit.step_rewards[perm])
    torch.testing.assert_close(shuffled.advantages, credit.advantages[perm], rtol=1e-5, atol=1e-5)
    assert torch.equal(shuffled.turning_points, credit.turning_points[perm])
    # relabelling groups changes nothing
    relabelled = algorithm(relabel(rollout))
    torch.testing.assert_close(relabelled.advantages, credit.advantages)
    assert torch.equal(relabelled.turning_points, credit.turning_points)


@pytest.mark.parametrize("name", NAMES)
def test_other_shapes_are_refused_naming_both(name: str) -> None:
    algorithm = get_algorithm(name)
    for other in ("chain", "anchor", "tree"):
        if other == algorithm.rollout_shape:
            continue
        donor = next(n for n in NAMES if SHAPES[n] == other)
        message = shape_mismatch(name, algorithm.rollout_shape, other)
        assert algorithm.rollout_shape in message and other in message
        with pytest.raises(ValueError, match=re.escape(message)):
            algorithm(rollout_for(donor, 0))
        kernel_message = message.split(" needs ")[1]  # the kernel names its function, e.g. tp_grpo for *_strict
        with pytest.raises(ValueError, match=re.escape(kernel_message)):
            _base(ALGORITHMS[name].fn)(rollout_for(donor, 0))  # the pure kernel checks too


def _base(fn):
    return fn.func if hasattr(fn, "func") else fn


@pytest.mark.parametrize("name", CHAIN)
@pytest.mark.parametrize("std_mode", ["group", "global", "none"])
def test_equal_rewards_within_groups_give_zero_advantages(name: str, std_mode: str) -> None:
    gen = torch.Generator().manual_seed(3)
    group_ids = torch.arange(4).repeat_interleave(3)
    per_group = torch.rand(4, 7, generator=gen) * 0.3 + 0.1  # values with no exact float representation
    rollout = Rollout(group_ids=group_ids, completion_rewards=per_group[group_ids])
    credit = get_algorithm(name, std_mode=std_mode)(rollout)
    assert torch.equal(credit.advantages, torch.zeros_like(credit.advantages))


# --------------------------------------------------------------------------------- against the references


@pytest.mark.parametrize("name", REFERENCE)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("balance_key", ["r_agg", "trajectory"])
def test_matches_loop_reference(name: str, ties: bool, balance_key: str) -> None:
    options = {"balance_key": balance_key} if name.startswith("tp_grpo") else {}
    for seed in range(25):
        rollout = random_rollout(seed, groups=3, group_size=4, steps=5, ties=ties)
        credit = get_algorithm(name, **options)(rollout)
        R = rollout.completion_rewards.double().tolist()
        expected_rewards, expected_tp = reference_step_rewards(name, R, balance_key=balance_key)
        assert_matches_loop_reference(credit, rollout, expected_rewards, expected_tp, seed)


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("tp_grpo") and not n.endswith("_release")])
def test_unbalanced_matches_reference(name: str) -> None:
    for seed in range(25):
        rollout = random_rollout(seed, ties=seed % 2 == 1)
        credit = get_algorithm(name, balance=False)(rollout)
        _, expected_tp = reference_step_rewards(name, rollout.completion_rewards.double().tolist(), balance=False)
        assert credit.turning_points.tolist() == expected_tp


def test_constant_groups_stay_zero_with_eps_zero() -> None:
    values = torch.tensor([[1.0, 2.0], [1.0, 3.0]])
    got = group_advantages(values, torch.zeros(2, dtype=torch.int64), eps=0.0)
    assert got.tolist() == [[0.0, -1.0], [0.0, 1.0]]


@pytest.mark.parametrize("std_mode", ["group", "global", "none"])
def test_advantages_match_reference(std_mode: str) -> None:
    gen = torch.Generator().manual_seed(5)
    values = torch.randn(24, 4, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 5, (24,), generator=gen)
    got = group_advantages(values, groups, std_mode=std_mode)
    expected = reference_advantages(values.tolist(), groups.tolist(), std_mode)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


# ---------------------------------------------------------------------------- known answers, pinned values


def test_worked_example_of_the_spec() -> None:
    R = torch.tensor([[0.50, 0.48, 0.47, 0.52, 0.51, 0.55]], dtype=torch.float64)
    rollout = Rollout(group_ids=torch.zeros(1, dtype=torch.int64), completion_rewards=R)
    loose = get_algorithm("tp_grpo")(rollout)
    strict = get_algorithm("tp_grpo_strict")(rollout)
    assert loose.turning_points.tolist() == [[False, False, True, False, True]]
    assert strict.turning_points.tolist() == [[False, False, True, False, False]]
    torch.testing.assert_close(
        strict.step_rewards, torch.tensor([[-0.02, -0.01, 0.08, -0.01, 0.04]], dtype=torch.float64)
    )
    torch.testing.assert_close(
        loose.step_rewards, torch.tensor([[-0.02, -0.01, 0.08, -0.01, 0.04]], dtype=torch.float64)
    )


def reference_release(R: list[list[float]], *, strict: bool):
    """Loop-based released rule (docs/math.md section 3): (R_K - R_0) + [marked] * d_k, no balancing.

    The marks are written out again here from the definition, independently of the kernels' ``turning_points``.
    """
    K = len(R[0]) - 1
    rewards, marks = [], []
    for row in R:
        d = [row[k + 1] - row[k] for k in range(K)]
        g = sign(row[K] - row[0])
        s = [sign(d[k]) * g for k in range(K)]
        row_rewards, row_marks = [], []
        for k in range(K):
            marked = s[0] > 0 if k == 0 else (s[k - 1] < 0 and s[k] > 0)
            if strict:
                marked = marked and sign(d[k]) * sign(row[K] - row[k + 1]) > 0
            marked = marked and row[K] - row[k] != 0
            row_marks.append(marked)
            row_rewards.append((row[K] - row[0]) + (d[k] if marked else 0.0))
        rewards.append(row_rewards)
        marks.append(row_marks)
    return rewards, marks


@pytest.mark.parametrize("name", ["tp_grpo_release", "tp_grpo_strict_release"])
@pytest.mark.parametrize("ties", [False, True])
def test_release_rule_matches_loop_reference(name: str, ties: bool) -> None:
    for seed in range(25):
        rollout = random_rollout(seed, groups=3, group_size=4, steps=5, ties=ties)
        credit = get_algorithm(name)(rollout)
        R = rollout.completion_rewards.double().tolist()
        expected_rewards, expected_tp = reference_release(R, strict=name == "tp_grpo_strict_release")
        assert_matches_loop_reference(credit, rollout, expected_rewards, expected_tp, seed)


def test_release_rule_worked_example_of_the_docs() -> None:
    """docs/math.md section 3, "The released rule": a falling trajectory and a rising one with a step-0 mark."""
    falling = torch.tensor([[0.40, 0.45, 0.42, 0.38, 0.41, 0.30]], dtype=torch.float64)
    rising = torch.tensor([[0.20, 0.30, 0.25, 0.35]], dtype=torch.float64)
    one = torch.zeros(1, dtype=torch.int64)
    cases = {
        ("tp_grpo_release", "falling"): ([False, True, False, False, True], [-0.10, -0.13, -0.10, -0.10, -0.21]),
        ("tp_grpo_strict_release", "falling"): (
            [False, True, False, False, False],
            [-0.10, -0.13, -0.10, -0.10, -0.10],
        ),
        ("tp_grpo_release", "rising"): ([True, False, True], [0.25, 0.15, 0.25]),
        ("tp_grpo_strict_release", "rising"): ([True, False, False], [0.25, 0.15, 0.15]),
    }
    for (name, which), (marks, rewards) in cases.items():
        R = falling if which == "falling" else rising
        credit = get_algorithm(name)(Rollout(group_ids=one, completion_rewards=R))
        assert credit.turning_points.tolist() == [marks], (name, which)
        torch.testing.assert_close(credit.step_rewards, torch.tensor([rewards], dtype=torch.float64))
    # the paper's rule on the falling one, for contrast: d_k, and r_agg at its two marks (both negative: kept)
    paper = get_algorithm("tp_grpo")(Rollout(group_ids=one, completion_rewards=falling))
    torch.testing.assert_close(
        paper.step_rewards, torch.tensor([[0.05, -0.15, -0.04, 0.03, -0.11]], dtype=torch.float64)
    )


def test_strict_turning_points_have_larger_aggregated_reward() -> None:
    rollout = random_rollout(11, groups=8, steps=9)
    R = rollout.completion_rewards
    credit = get_algorithm("tp_grpo_strict", balance=False)(rollout)
    d = R[:, 1:] - R[:, :-1]
    r_agg = R[:, -1:] - R[:, :-1]
    marked = credit.turning_points
    assert marked.any()
    assert (torch.sign(r_agg[marked]) == torch.sign(d[marked])).all()
    assert (r_agg[marked].abs() > d[marked].abs()).all()
    assert not marked[:, -1].any()  # the last window step can never qualify


def test_balancing_keeps_the_largest_of_each_sign() -> None:
    # trajectory 0 rises (g > 0) with a turning point at step 2; trajectories 1, 2 fall with turning points too
    R = torch.tensor(
        [
            [0.5, 0.4, 0.3, 0.9],  # s = [-, -, +]: step 2 marked, r_agg = +0.6; step 0 not (s_0 < 0)
            [0.5, 0.6, 0.5, 0.1],  # g < 0; s = [-, +, +]: step 1 marked, r_agg = -0.5
            [0.5, 0.55, 0.45, 0.4],  # g < 0; s = [-, +, +]: step 1 marked, r_agg = -0.15
        ]
    )
    rollout = Rollout(group_ids=torch.tensor([0, 0, 0]), completion_rewards=R)
    unbalanced = get_algorithm("tp_grpo", balance=False)(rollout).turning_points
    assert unbalanced.tolist() == [[False, False, True], [False, True, False], [False, True, False]]
    balanced = get_algorithm("tp_grpo")(rollout)
    assert balanced.turning_points.tolist() == [[False, False, True], [False, True, False], [False, False, False]]
    torch.testing.assert_close(balanced.step_rewards[2], R[2, 1:] - R[2, :-1])


def test_pinned_values() -> None:
    rollout = random_rollout(2024, groups=2, group_size=3, steps=4)
    credit = get_algorithm("tp_grpo_strict")(rollout)
    assert credit.turning_points.sum().item() == PINNED_TP_COUNT
    torch.testing.assert_close(credit.step_rewards.sum(), torch.tensor(PINNED_STEP_REWARD_SUM), atol=1e-5, rtol=0)
    torch.testing.assert_close(credit.advantages[0], torch.tensor(PINNED_ADVANTAGES_ROW0), atol=1e-4, rtol=0)


# computed once from this implementation (which matches the loop reference above) and frozen here
PINNED_TP_COUNT = 6
PINNED_STEP_REWARD_SUM = 0.0407119
PINNED_ADVANTAGES_ROW0 = [1.3266, 0.2822, -1.3955, 0.3141]


# ------------------------------------------------------------------------------------------ bad input


def test_unknown_name_and_option_list_the_choices() -> None:
    with pytest.raises(ValueError, match="valid: flow_grpo, incremental"):
        get_algorithm("grpo")
    with pytest.raises(ValueError, match="valid: .*balance_key"):
        get_algorithm("tp_grpo", balanse=True)
    with pytest.raises(ValueError, match="valid: std_mode, eps"):
        get_algorithm("flow_grpo", balance=True)
    with pytest.raises(ValueError, match="valid: group, global, none"):
        get_algorithm("incremental", std_mode="batch")
    with pytest.raises(ValueError, match="valid: r_agg, trajectory"):
        get_algorithm("tp_grpo", balance_key="prompt")


def test_needs_completions() -> None:
    assert not get_algorithm("flow_grpo").needs_completions
    assert all(get_algorithm(n).needs_completions for n in NAMES if n not in ("flow_grpo", "branch_grpo"))
    final_only = Rollout(group_ids=torch.tensor([0, 0]), final_rewards=torch.tensor([0.1, 0.7]), num_steps=3)
    assert get_algorithm("flow_grpo")(final_only).step_rewards.shape == (2, 3)
    with pytest.raises(ValueError, match="needs completion_rewards"):
        get_algorithm("tp_grpo")(final_only)


def test_external_algorithm_by_path() -> None:
    algorithm = get_algorithm("creditzoo.algorithms.incremental:INCREMENTAL", std_mode="none")
    rollout = random_rollout(4)
    torch.testing.assert_close(
        algorithm(rollout).advantages, get_algorithm("incremental", std_mode="none")(rollout).advantages
    )
    with pytest.raises(ValueError, match="cannot import module 'creditzoo.nowhere'"):
        get_algorithm("creditzoo.nowhere:thing")
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        get_algorithm("creditzoo.algorithms.incremental:nope")
    with pytest.raises(ValueError, match="is not an AlgorithmSpec"):  # a bare kernel declares no shape or cost
        get_algorithm("creditzoo.algorithms.incremental:incremental")


def test_rollout_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"completion_rewards must have shape \[B=2, K\+1\]"):
        Rollout(group_ids=torch.tensor([0, 1]), completion_rewards=torch.zeros(2))
    with pytest.raises(ValueError, match=r"completion_rewards must have shape \[2, 4\], got \[3, 4\]"):
        Rollout(group_ids=torch.tensor([0, 1]), completion_rewards=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="group_ids must be int64"):
        Rollout(group_ids=torch.tensor([0.0, 1.0]), completion_rewards=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        Rollout(group_ids=torch.tensor([0, 1]), completion_rewards=torch.tensor([[0.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="num_steps"):
        Rollout(group_ids=torch.tensor([0, 1]), final_rewards=torch.zeros(2))
    with pytest.raises(ValueError, match=r"final_rewards must have shape \[2\]"):
        Rollout(group_ids=torch.tensor([0, 1]), final_rewards=torch.zeros(3), num_steps=2)
    rollout = Rollout(group_ids=torch.tensor([0, 1]), completion_rewards=torch.tensor([[0.0, 0.2], [0.1, 0.3]]))
    assert rollout.num_steps == 1 and rollout.final_rewards.tolist() == pytest.approx([0.2, 0.3])
