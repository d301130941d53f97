"""Section-9 credit schemes: worked examples of docs/math.md section 9, exactly, and slow loop references."""

import math

import pytest
import torch

from creditzoo.algorithms import check_split_steps, default_split_steps, get_algorithm
from creditzoo.rollout import Rollout

# ------------------------------------------------------------------------------------- loop references


def ref_normalise(xs: list[float], eps: float = 1e-4) -> list[float]:
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    return [(x - mean) / (std + eps) for x in xs]


def ref_anchor(R: list[list[list[float]]], groups: list[int], levels: int) -> list[list[float]]:
    """Section 7.3: per (prompt, k) group of children, section-4 advantages of each R^g, summed over g."""
    B, K = len(R), len(R[0])
    out = [[0.0] * K for _ in range(B)]
    for g in set(groups):
        members = [b for b in range(B) if groups[b] == g]
        for k in range(K):
            for level in range(levels):
                for b, a in zip(members, ref_normalise([R[b][k][level] for b in members]), strict=True):
                    out[b][k] += a
    return out


def ref_sample_normalise(xs: list[float]) -> list[float]:
    """The released BranchGRPO normalisation: sample std (ddof 1) + 1e-8; all 0 for one node or std < 1e-6."""
    if len(xs) < 2:
        return [0.0] * len(xs)
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return [0.0] * len(xs) if std < 1e-6 else [(x - mean) / (std + 1e-8) for x in xs]


def ref_tree(rewards, groups, log_probs, splits, K, fusion, depth_std="sample"):
    """Section 7.4 by explicit nodes: a node is the tuple of branch choices made at split steps <= k."""
    B = len(rewards)
    advantages = [[0.0] * K for _ in range(B)]
    weights = [[0.0] * K for _ in range(B)]
    values = [[0.0] * K for _ in range(B)]
    for g in set(groups):
        leaves = [b for b in range(B) if groups[b] == g]  # in branch order
        choices = {b: [(i >> (len(splits) - 1 - t)) & 1 for t in range(len(splits))] for i, b in enumerate(leaves)}
        for k in range(K):
            made = [t for t, s in enumerate(splits) if s <= k]
            nodes: dict[tuple, list[int]] = {}
            for b in leaves:
                nodes.setdefault(tuple(choices[b][t] for t in made), []).append(b)
            node_value = {}
            for key, below in nodes.items():
                if fusion == "mean":
                    node_value[key] = sum(rewards[b] for b in below) / len(below)
                else:
                    raw = [math.exp(sum(log_probs[b][j] for j in range(k + 1, K))) for b in below]
                    node_value[key] = sum(w * rewards[b] for w, b in zip(raw, below, strict=True)) / sum(raw)
            keys = list(nodes)
            normalise = ref_sample_normalise if depth_std == "sample" else ref_normalise
            normalised = dict(zip(keys, normalise([node_value[key] for key in keys]), strict=True))
            if len(keys) == 1:
                normalised = {keys[0]: 0.0}
            for key, below in nodes.items():
                for b in below:
                    advantages[b][k] = normalised[key]
                    weights[b][k] = 1 / len(below)
                    values[b][k] = node_value[key]
    return advantages, weights, values


def anchor_rollout(seed: int, levels: int, *, ties: bool, groups: int = 3, size: int = 4, steps: int = 5) -> Rollout:
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.rand(groups * size, steps, levels, generator=gen, dtype=torch.float64)
    if ties:
        rewards = (rewards * 3).floor() / 3  # many equal children, whole groups equal at some steps
    group_ids = torch.arange(groups).repeat_interleave(size)[torch.randperm(groups * size, generator=gen)]
    return Rollout(group_ids=group_ids, shape="anchor", branch_rewards=rewards)


def tree_rollout(seed: int, splits: tuple[int, ...], steps: int, *, ties: bool, groups: int = 3) -> Rollout:
    gen = torch.Generator().manual_seed(seed)
    leaves = 2 ** len(splits)
    rewards = torch.rand(groups * leaves, generator=gen, dtype=torch.float64)
    if ties:
        rewards = (rewards * 3).floor() / 3
    labels = torch.randperm(100, generator=gen)[:groups]
    return Rollout(
        group_ids=labels.repeat(leaves),  # interleaved trees; each keeps its leaf order
        shape="tree",
        final_rewards=rewards,
        num_steps=steps,
        split_steps=splits,
        log_probs=torch.randn(groups * leaves, steps, generator=gen, dtype=torch.float64) * 0.5,
    )


@pytest.mark.parametrize("ties", [False, True])
def test_tempflow_matches_loop_reference(ties: bool) -> None:
    for seed in range(20):
        rollout = anchor_rollout(seed, 1, ties=ties)
        credit = get_algorithm("tempflow")(rollout)
        expected = ref_anchor(rollout.branch_rewards.tolist(), rollout.group_ids.tolist(), 1)
        torch.testing.assert_close(credit.advantages, torch.tensor(expected, dtype=torch.float64), atol=1e-9, rtol=0)
        torch.testing.assert_close(credit.step_rewards, rollout.branch_rewards[:, :, 0])


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("granularities", [(1, 2), (1, 2, 3), (4,)])
def test_g2rpo_matches_loop_reference(ties: bool, granularities: tuple[int, ...]) -> None:
    for seed in range(20):
        rollout = anchor_rollout(seed, len(granularities), ties=ties)
        credit = get_algorithm("g2rpo", granularities=granularities)(rollout)
        expected = ref_anchor(rollout.branch_rewards.tolist(), rollout.group_ids.tolist(), len(granularities))
        torch.testing.assert_close(credit.advantages, torch.tensor(expected, dtype=torch.float64), atol=1e-9, rtol=0)


@pytest.mark.parametrize("depth_std", ["sample", "population"])
@pytest.mark.parametrize("fusion", ["mean", "path"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("splits", "steps"), [((0, 2), 4), ((0, 2, 4, 6), 9), ((1,), 3), ((0, 1, 2), 3), ((3,), 5)])
def test_branch_grpo_matches_loop_reference(
    depth_std: str, fusion: str, ties: bool, splits: tuple[int, ...], steps: int
) -> None:
    for seed in range(10):
        rollout = tree_rollout(seed, splits, steps, ties=ties)
        credit = get_algorithm("branch_grpo", fusion=fusion, depth_std=depth_std)(rollout)
        advantages, weights, values = ref_tree(
            rollout.final_rewards.tolist(),
            rollout.group_ids.tolist(),
            rollout.log_probs.tolist(),
            splits,
            steps,
            fusion,
            depth_std,
        )
        torch.testing.assert_close(credit.step_rewards, torch.tensor(values, dtype=torch.float64), atol=1e-9, rtol=0)
        torch.testing.assert_close(credit.advantages, torch.tensor(advantages, dtype=torch.float64), atol=1e-7, rtol=0)
        torch.testing.assert_close(credit.weights, torch.tensor(weights, dtype=torch.float64), atol=0, rtol=0)
        if splits[0] > 0:  # single-node depths before the first split: exactly zero
            assert torch.equal(credit.advantages[:, : splits[0]], torch.zeros_like(credit.advantages[:, : splits[0]]))


def test_path_fusion_differs_from_mean_and_tends_to_it_with_equal_paths() -> None:
    rollout = tree_rollout(3, (0, 2), 4, ties=False)
    mean = get_algorithm("branch_grpo", fusion="mean")(rollout)
    path = get_algorithm("branch_grpo", fusion="path")(rollout)
    assert not torch.allclose(mean.step_rewards, path.step_rewards)
    flat = Rollout(**{**vars(rollout), "log_probs": torch.zeros_like(rollout.log_probs)})
    torch.testing.assert_close(get_algorithm("branch_grpo", fusion="path")(flat).step_rewards, mean.step_rewards)


# ------------------------------------------------------------------------ worked examples of section 7


def test_dense_value_worked_example() -> None:
    R = torch.tensor([[0.50, 0.60, 0.90], [0.50, 0.40, 0.70], [0.50, 0.55, 0.50]], dtype=torch.float64)
    rollout = Rollout(group_ids=torch.zeros(3, dtype=torch.int64), completion_rewards=R)
    incremental = get_algorithm("incremental")(rollout).advantages
    dense = get_algorithm("dense_value")(rollout)
    torch.testing.assert_close(
        incremental,
        torch.tensor([[0.9794, 0.7067], [-1.3712, 0.7067], [0.3918, -1.4134]], dtype=torch.float64),
        atol=1e-4,
        rtol=0,
    )
    torch.testing.assert_close(
        dense.advantages,
        torch.tensor([[0.9794, 1.2240], [-1.3712, 0.0], [0.3918, -1.2240]], dtype=torch.float64),
        atol=1e-4,
        rtol=0,
    )
    torch.testing.assert_close(dense.step_rewards, R[:, 1:])


def test_tempflow_worked_example() -> None:
    columns = torch.tensor([[1.0, 2.0, 3.0], [0.2, 0.2, 0.5], [4.0, 4.0, 4.0]], dtype=torch.float64)  # [K, C]
    rollout = Rollout(
        group_ids=torch.zeros(3, dtype=torch.int64), shape="anchor", branch_rewards=columns.T.unsqueeze(2)
    )
    credit = get_algorithm("tempflow")(rollout)
    expected = torch.tensor([[-1.2247, -0.7071, 0], [0, -0.7071, 0], [1.2247, 1.4142, 0]], dtype=torch.float64)
    # "up to eps": the printed values are those of eps = 0; with eps = 1e-4 the small-std column moves by ~1e-3
    torch.testing.assert_close(get_algorithm("tempflow", eps=0.0)(rollout).advantages, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(credit.advantages, expected, atol=1e-3, rtol=0)
    assert torch.equal(credit.advantages[:, 2], torch.zeros(3, dtype=torch.float64))
    assert get_algorithm("tempflow").default_step_weight == "noise"
    assert get_algorithm("g2rpo").default_step_weight == "none"


def test_g2rpo_worked_example() -> None:
    rewards = torch.tensor([[1.0, 2.0], [2.0, 2.0], [3.0, 5.0]], dtype=torch.float64).unsqueeze(1)  # [3, K=1, 2]
    rollout = Rollout(group_ids=torch.zeros(3, dtype=torch.int64), shape="anchor", branch_rewards=rewards)
    credit = get_algorithm("g2rpo")(rollout)
    torch.testing.assert_close(
        credit.advantages[:, 0], torch.tensor([-1.9317, -0.7071, 2.6387], dtype=torch.float64), atol=1e-4, rtol=0
    )


def test_branch_grpo_worked_example() -> None:
    rollout = Rollout(
        group_ids=torch.zeros(4, dtype=torch.int64),
        shape="tree",
        final_rewards=torch.tensor([1.0, 3.0, 2.0, 6.0], dtype=torch.float64),
        num_steps=4,
        split_steps=(0, 2),
    )
    credit = get_algorithm("branch_grpo")(rollout)  # default: the released sample std
    torch.testing.assert_close(
        credit.step_rewards,
        torch.tensor([[2, 2, 1, 1], [2, 2, 3, 3], [4, 4, 2, 2], [4, 4, 6, 6]], dtype=torch.float64),
    )
    # by hand: depths 1-2 nodes {2, 4}: sample std sqrt(2), so +-1/sqrt(2); depths 3-4 nodes {1, 3, 2, 6}: mean 3,
    # sample std sqrt(14/3) = 2.1602, so -0.9258, 0, -0.4629, 1.3887
    expected = torch.tensor(
        [
            [-0.7071, -0.7071, -0.9258, -0.9258],
            [-0.7071, -0.7071, 0, 0],
            [0.7071, 0.7071, -0.4629, -0.4629],
            [0.7071, 0.7071, 1.3887, 1.3887],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(credit.advantages, expected, atol=1e-4, rtol=0)
    assert credit.weights.tolist() == [[0.5, 0.5, 1.0, 1.0]] * 4
    assert credit.advantages[1, 2].item() == 0.0  # the node at the mean gets exactly 0
    population = get_algorithm("branch_grpo", depth_std="population")(rollout)  # section 4: eps 1e-4
    expected = torch.tensor(
        [
            [-0.9999, -0.9999, -1.0690, -1.0690],
            [-0.9999, -0.9999, 0, 0],
            [0.9999, 0.9999, -0.5345, -0.5345],
            [0.9999, 0.9999, 1.6035, 1.6035],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(population.advantages, expected, atol=1e-4, rtol=0)
    assert torch.equal(population.step_rewards, credit.step_rewards)


def test_branch_grpo_sample_std_zeroes_a_flat_depth_and_refuses_unknown_conventions() -> None:
    rollout = Rollout(
        group_ids=torch.zeros(4, dtype=torch.int64),
        shape="tree",
        final_rewards=torch.tensor([1.0, 1.0 + 1e-7, 1.0, 1.0 + 1e-7], dtype=torch.float64),
        num_steps=2,
        split_steps=(0, 1),
    )
    credit = get_algorithm("branch_grpo")(rollout)
    assert torch.equal(credit.advantages, torch.zeros_like(credit.advantages))  # std < 1e-6: no signal
    # the population convention (eps 1e-4) still sees the 1e-7 differences, so the zeros above are the cut-off's
    assert get_algorithm("branch_grpo", depth_std="population")(rollout).advantages.abs().max() > 1e-4
    with pytest.raises(ValueError, match="unknown depth_std 'ddof2'; valid: sample, population"):
        get_algorithm("branch_grpo", depth_std="ddof2")


# --------------------------------------------------------------------------------------- bad input


def test_split_steps_defaults_and_validation() -> None:
    assert default_split_steps(9) == (0, 2, 4, 6)
    assert default_split_steps(12) == (0, 2, 4, 6)
    assert default_split_steps(4) == (0, 2)
    assert default_split_steps(1) == (0,)
    assert check_split_steps(None, 9, 16) == (0, 2, 4, 6)
    with pytest.raises(ValueError, match=r"window steps in 0\.\.3"):
        check_split_steps((0, 4), 4)
    with pytest.raises(ValueError, match="non-empty"):
        check_split_steps((), 4)
    with pytest.raises(ValueError, match="group size must be 4, got 6"):
        check_split_steps((0, 2), 4, 6)
    with pytest.raises(ValueError, match="power of two"):
        check_split_steps(None, 9, 8)


def test_bad_options_fail_at_construction_with_the_choices() -> None:
    with pytest.raises(ValueError, match="valid: mean, path"):
        get_algorithm("branch_grpo", fusion="max")
    with pytest.raises(ValueError, match=r"window steps in 0\.\.8"):
        get_algorithm("branch_grpo", split_steps=(-1, 2))
    with pytest.raises(ValueError, match="integers >= 1"):
        get_algorithm("g2rpo", granularities=(0, 2))
    with pytest.raises(ValueError, match="integers >= 1"):
        get_algorithm("g2rpo", granularities=())


def test_tree_rollout_mismatches_are_refused() -> None:
    rollout = tree_rollout(0, (0, 2), 4, ties=False)
    with pytest.raises(ValueError, match="differs from the rollout's"):
        get_algorithm("branch_grpo", split_steps=(0, 1))(rollout)
    wrong_size = Rollout(
        group_ids=torch.zeros(3, dtype=torch.int64),
        shape="tree",
        final_rewards=torch.rand(3),
        num_steps=4,
        split_steps=(0, 2),
    )
    with pytest.raises(ValueError, match="group size must be 4, got 3"):
        get_algorithm("branch_grpo")(wrong_size)
    no_log_probs = Rollout(**{**vars(rollout), "log_probs": None})
    with pytest.raises(ValueError, match="needs the rollout's log_probs"):
        get_algorithm("branch_grpo", fusion="path")(no_log_probs)
    with pytest.raises(ValueError, match="needs branch_rewards \\[B, K, 2\\], got L=1"):
        get_algorithm("g2rpo")(anchor_rollout(0, 1, ties=False))


def test_rollout_shape_validation() -> None:
    with pytest.raises(ValueError, match="valid: chain, anchor, tree"):
        Rollout(group_ids=torch.zeros(2, dtype=torch.int64), final_rewards=torch.rand(2), num_steps=2, shape="dag")
    with pytest.raises(ValueError, match=r"branch_rewards of shape \[B=2, K, L\]"):
        Rollout(group_ids=torch.zeros(2, dtype=torch.int64), shape="anchor", branch_rewards=torch.rand(2, 3))
    with pytest.raises(ValueError, match="split_steps"):
        Rollout(group_ids=torch.zeros(2, dtype=torch.int64), shape="tree", final_rewards=torch.rand(2), num_steps=3)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        Rollout(
            group_ids=torch.zeros(2, dtype=torch.int64),
            shape="tree",
            final_rewards=torch.rand(2),
            num_steps=3,
            split_steps=(3,),
        )
    with pytest.raises(ValueError, match="belong to anchor rollouts"):
        Rollout(
            group_ids=torch.zeros(1, dtype=torch.int64),
            completion_rewards=torch.rand(1, 3),
            branch_rewards=torch.rand(1, 2, 1),
        )
