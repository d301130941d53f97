"""BranchGRPO as released (docs/math.md section 9.4): split noise, nested path fusion, depth and width pruning.

Every expected number is worked by hand (in the comments) or comes from a loop written from the released code's
procedure (Fredreic1849/BranchGRPO, ``fastvideo/train_branchgrpo_flux.py``), never from the kernel under test.
"""

import json
import math

import pytest
import torch
from test_branching import SHAPE, log_density, make_env, sde_moments, velocity_one
from test_learner_shapes import make_learner
from typer.testing import CliRunner

from creditzoo.algorithms import get_algorithm
from creditzoo.algorithms.branch_pruning import parse_depth_prune, parse_width_prune
from creditzoo.analysis.credit import Record
from creditzoo.cli import app
from creditzoo.learner.config import TrainConfig
from creditzoo.rollout import Rollout
from creditzoo.sampling import flow_sigmas, parse_split_noise
from creditzoo.shapes.tree import sample_tree

LN3 = math.log(3.0)


def spec_tree(splits: tuple[int, ...], log_probs: torch.Tensor | None = None, iteration: int | None = None) -> Rollout:
    """The section-9.4 example's leaves a, b, c, d (rewards 1, 3, 2, 6) in one tree of K = 4 window steps."""
    return Rollout(
        group_ids=torch.zeros(4, dtype=torch.int64),
        shape="tree",
        final_rewards=torch.tensor([1.0, 3.0, 2.0, 6.0], dtype=torch.float64),
        num_steps=4,
        split_steps=splits,
        log_probs=log_probs,
        iteration=iteration,
    )


# ------------------------------------------------------------------------------------- path_code fusion


def test_path_code_worked_example() -> None:
    # S = {0, 2}. Only the edges of the split at step 2 (column 2) enter: node X' (after step 1, above a and b)
    # weights its children by softmax(0, ln 3) = (1/4, 3/4): 0.25 * 1 + 0.75 * 3 = 2.5; node Y' (above c and d)
    # by softmax(-1, -1) = (1/2, 1/2): 3 + 1 = 4. Step 1 does not split, so X and Y (after step 0) pass 2.5 and 4
    # on. Columns 0, 1 and 3 carry log-probs that must not matter (the root is no column; steps 1, 3 do not split).
    log_probs = torch.tensor(
        [[5.0, -2.0, 0.0, 7.0], [5.0, -2.0, LN3, -3.0], [-4.0, 1.0, -1.0, 0.5], [-4.0, 1.0, -1.0, 9.0]],
        dtype=torch.float64,
    )
    credit = get_algorithm("branch_grpo", fusion="path_code")(spec_tree((0, 2), log_probs))
    expected = torch.tensor([[2.5, 2.5, 1, 1], [2.5, 2.5, 3, 3], [4, 4, 2, 2], [4, 4, 6, 6]], dtype=torch.float64)
    torch.testing.assert_close(credit.step_rewards, expected)
    # two nodes {2.5, 4} at depths 1-2: +-0.7071 (sample std); depths 3-4 as with mean fusion
    torch.testing.assert_close(
        credit.advantages[:, 0], torch.tensor([-0.7071, -0.7071, 0.7071, 0.7071]).double(), atol=1e-4, rtol=0
    )
    # the paper's "path" fusion weights whole paths below the node (columns 2 and 3 here), so it differs
    path = get_algorithm("branch_grpo", fusion="path")(spec_tree((0, 2), log_probs))
    assert abs(path.step_rewards[0, 0].item() - 2.5) > 0.1


def test_path_code_nests_where_path_fusion_does_not() -> None:
    # S = {0, 1, 2}, K = 3: the node after step 0 above leaves a, b, c, d (rewards 1, 3, 2, 6). Column 1 edges
    # (split at 1) give its children softmax(0, ln 3) = (1/4, 3/4); column 2 edges (split at 2) give a, b
    # softmax(0, 0) and c, d softmax(ln 3, 0). Children values 2 and (3/4) 2 + (1/4) 6 = 3; the node: 1/4 * 2 +
    # 3/4 * 3 = 2.75. Path fusion instead weights leaves by exp(l1 + l2) = 1, 1, 9, 3: (1 + 3 + 18 + 18) / 14.
    rewards = torch.tensor([1.0, 3.0, 2.0, 6.0] * 2, dtype=torch.float64)
    columns = torch.tensor([[0.0, 0, 0], [0, 0, 0], [0, LN3, LN3], [0, LN3, 0]], dtype=torch.float64)
    rollout = Rollout(
        group_ids=torch.zeros(8, dtype=torch.int64),
        shape="tree",
        final_rewards=torch.cat([rewards[:4], rewards[:4] + 10]),
        num_steps=3,
        split_steps=(0, 1, 2),
        log_probs=torch.cat([columns, columns]),
    )
    nested = get_algorithm("branch_grpo", fusion="path_code")(rollout).step_rewards
    paper = get_algorithm("branch_grpo", fusion="path")(rollout).step_rewards
    assert nested[0, 0].item() == pytest.approx(2.75, abs=1e-12)
    assert nested[4, 0].item() == pytest.approx(12.75, abs=1e-12)  # the other subtree: the same weights, +10
    assert nested[2, 1].item() == pytest.approx(3.0, abs=1e-12)
    assert paper[0, 0].item() == pytest.approx(40 / 14, abs=1e-12)


def ref_path_code(rewards: list[float], log_probs: list[list[float]], splits: tuple, steps: int) -> list[list[float]]:
    """Node values of one tree by recursion from the root, as the released ``--tree_prob_weighted`` code does."""
    leaves = len(rewards)

    def value(depth: int, first: int, count: int) -> float:  # node at ``depth`` above leaves first..first+count-1
        if depth == steps:
            return rewards[first]
        if depth in splits:  # it takes a split step: two children, weighted by softmax of their edge log-probs
            half = count // 2
            edges = [log_probs[first][depth], log_probs[first + half][depth]]
            top = max(edges)
            weights = [math.exp(e - top) for e in edges]
            children = [value(depth + 1, first, half), value(depth + 1, first + half, half)]
            return sum(w * c for w, c in zip(weights, children, strict=True)) / sum(weights)
        return value(depth + 1, first, count)

    table = [[0.0] * steps for _ in range(leaves)]
    for k in range(steps):
        below = leaves >> sum(1 for s in splits if s <= k)  # leaves under a node after step k
        for first in range(0, leaves, below):
            for b in range(first, first + below):
                table[b][k] = value(k + 1, first, below) if k + 1 < steps else rewards[b]
    return table


@pytest.mark.parametrize(("splits", "steps"), [((0, 2), 4), ((0, 1, 2), 3), ((1, 3), 5), ((0, 2, 4, 6), 9)])
def test_path_code_matches_a_recursive_reference(splits: tuple, steps: int) -> None:
    generator = torch.Generator().manual_seed(len(splits) * 10 + steps)
    leaves = 2 ** len(splits)
    for _ in range(5):
        rewards = torch.rand(2 * leaves, generator=generator, dtype=torch.float64)
        log_probs = torch.randn(2 * leaves, steps, generator=generator, dtype=torch.float64) * 2
        for k in range(steps):  # an edge shared by m leaves has one log-prob, in each of its m rows
            share = 2 ** sum(1 for s in splits if s > k)
            log_probs[:, k] = log_probs[::share, k].repeat_interleave(share)
        rollout = Rollout(
            group_ids=torch.tensor([4, 9]).repeat_interleave(leaves),
            shape="tree",
            final_rewards=rewards,
            num_steps=steps,
            split_steps=splits,
            log_probs=log_probs,
        )
        values = get_algorithm("branch_grpo", fusion="path_code")(rollout).step_rewards
        for tree in range(2):
            rows = slice(tree * leaves, (tree + 1) * leaves)
            expected = ref_path_code(rewards[rows].tolist(), log_probs[rows].tolist(), splits, steps)
            torch.testing.assert_close(values[rows], torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)


# --------------------------------------------------------------------------------------------- pruning


def test_depth_pruning_worked_example() -> None:
    # S = {0, 2}: the tree has 2 + 2 + 4 + 4 = 12 edges; edge weights 1/2, 1/2, 1, 1 per row (each edge sums to 1).
    # depth_prune="4" drops the 4 edges into depth 4 (column 3); the loss averages over the 8 left, as the release
    # divides by the edges trained per tree: the others scale by 12 / 8 = 1.5.
    base = get_algorithm("branch_grpo")(spec_tree((0, 2)))
    fixed = get_algorithm("branch_grpo", depth_prune="4")(spec_tree((0, 2)))
    assert fixed.weights.tolist() == [[0.75, 0.75, 1.5, 0.0]] * 4
    assert torch.equal(fixed.advantages, base.advantages) and torch.equal(fixed.step_rewards, base.step_rewards)
    # sliding: "4:slide:2" moves one depth shallower every 2 iterations (shift = iteration // 2) and stops at the
    # depth of the last split's parent, max(S) = 2: iteration 1 -> {4}, 2-3 -> {3}, 4 and later -> {2}.
    pruned_column = {1: 3, 2: 2, 3: 2, 4: 1, 5: 1, 9: 1}
    for iteration, column in pruned_column.items():
        weights = get_algorithm("branch_grpo", depth_prune="4:slide:2")(spec_tree((0, 2), iteration=iteration)).weights
        zero = (weights == 0).all(dim=0).nonzero().flatten().tolist()
        assert zero == [column], iteration
    # depth 2 pruned (2 edges of 12): the others scale by 12 / 10
    weights = get_algorithm("branch_grpo", depth_prune="4:slide:2")(spec_tree((0, 2), iteration=4)).weights
    torch.testing.assert_close(weights, torch.tensor([[0.6, 0.0, 1.2, 1.2]] * 4, dtype=torch.float64))
    # "1" and "2" take the released ratio 0.5
    assert parse_width_prune("2") == parse_width_prune("2:0.5") and parse_width_prune("1").ratio == 0.5
    # an explicit STOP, and no iteration known: the set has not moved
    assert parse_depth_prune("4:slide:2:3").active(9, (0, 2)) == (3,)
    assert parse_depth_prune("3,4:slide:1").active(None, (0, 2)) == (3, 4)


def test_width_pruning_worked_example() -> None:
    # S = {0, 1}, leaves a, b, c, d with rewards 1, 3, 2, 6: below the last split (step 1) every node holds its
    # leaf's reward, so columns 1-3 carry -0.9258, 0, -0.4629, 1.3887 (sample std) and column 0 +-0.7071. Edges:
    # 2 + 4 + 4 + 4 = 14. The edges after the last split are columns 2 and 3: a chain of 2 per leaf.
    advantages = torch.tensor([-0.9258, 0.0, -0.4629, 1.3887], dtype=torch.float64)
    # "1:0.5": each chain keeps max(1, floor(2 * 0.5)) = 1 edge; its two edges tie, and the stable sort keeps the
    # first (column 2). 4 edges go, the other 10 scale by 14 / 10.
    one = get_algorithm("branch_grpo", width_prune="1:0.5")(spec_tree((0, 1)))
    torch.testing.assert_close(one.advantages[:, 2], advantages, atol=1e-4, rtol=0)
    torch.testing.assert_close(one.weights, torch.tensor([[0.7, 1.4, 1.4, 0.0]] * 4, dtype=torch.float64))
    # "2:0.5": 8 candidate edges in the tree, q = max(2, floor(8 * 0.5)) = 4: the 2 best (d's two edges) and the
    # 2 worst (a's two edges) stay; b's and c's go.
    two = get_algorithm("branch_grpo", width_prune="2:0.5")(spec_tree((0, 1)))
    expected = [[0.7, 1.4, 1.4, 1.4], [0.7, 1.4, 0, 0], [0.7, 1.4, 0, 0], [0.7, 1.4, 1.4, 1.4]]
    torch.testing.assert_close(two.weights, torch.tensor(expected, dtype=torch.float64))
    # "2:0.25": q = max(2, 2) = 2: 1 best, 1 worst. Ties as released: the best is d's first edge (column 2), the
    # worst is the last of the sorted list, a's deeper edge (column 3). 6 of 14 go: scale 14 / 8.
    quarter = get_algorithm("branch_grpo", width_prune="2:0.25")(spec_tree((0, 1))).weights
    s = 14 / 8
    expected = [[s / 2, s, 0, s], [s / 2, s, 0, 0], [s / 2, s, 0, 0], [s / 2, s, s, 0]]
    torch.testing.assert_close(quarter, torch.tensor(expected, dtype=torch.float64))
    # depth first, then width (the released order): depth 4 pruned leaves 1 candidate per chain, which stays
    both = get_algorithm("branch_grpo", depth_prune="4", width_prune="1:0.5")(spec_tree((0, 1))).weights
    torch.testing.assert_close(both, one.weights)


def release_pruning(advantages, splits, steps, iteration, depth_prune, width_prune) -> set:
    """The released procedure on one tree: transitions in depth-first order, then the depth and width filters.

    A transition is (child depth, child node index at that depth, parent step); its advantage is its child's.
    Width mode 2 pools one tree here (the release pools a device batch; docs/math.md section 9.5).
    """
    samples = []

    def visit(depth: int, index: int) -> None:  # node at ``depth`` (0: the root) with index among its depth's nodes
        if depth == steps:
            return
        fan = 2 if depth in splits else 1
        for child in range(index * fan, index * fan + fan):
            later = sum(1 for s in splits if s > depth)  # splits below the child
            samples.append((depth + 1, child, depth, advantages[child << later][depth]))
            visit(depth + 1, child)

    visit(0, 0)
    if depth_prune is not None:
        spec = parse_depth_prune(depth_prune)
        base = list(spec.depths)
        active = base
        if spec.interval is not None:
            stop = max(splits) if spec.stop is None else spec.stop
            shift = min(max(0, iteration // spec.interval), max(0, base[0] - stop))
            active = [d - shift for d in base]
        samples = [t for t in samples if t[0] not in set(active)]
    if width_prune is not None:
        mode, ratio = int(width_prune.split(":")[0]), float(width_prune.split(":")[1])
        last = max(splits)
        late = [t for t in samples if t[2] > last]
        others = [t for t in samples if t[2] <= last]
        if mode == 1:
            branches: dict = {}
            for t in late:  # no split below the last one: the branch is the child index
                branches.setdefault(t[1], []).append(t)
            kept = []
            for group in branches.values():
                kept += sorted(group, key=lambda t: t[3], reverse=True)[: max(1, int(len(group) * ratio))]
        else:
            ranked = sorted(late, key=lambda t: t[3], reverse=True)
            keep = min(len(ranked), max(2, int(len(ranked) * ratio)))
            best = keep // 2
            kept = ranked[:best] + (ranked[-(keep - best) :] if keep - best > 0 else [])
        samples = others + kept
    return {(t[0], t[1]) for t in samples}


@pytest.mark.parametrize(
    ("depth_prune", "width_prune"),
    [
        ("9", None),
        ("7,8:slide:3", None),
        ("8,9:slide:2:4", None),
        (None, "1:0.5"),
        (None, "2:0.5"),
        (None, "2:0.3"),
        ("9", "1:0.7"),
        ("5,9:slide:1", "2:0.5"),
    ],
)
@pytest.mark.parametrize("ties", [False, True])
def test_pruning_matches_the_released_procedure(depth_prune, width_prune, ties: bool) -> None:
    splits, steps, leaves = (0, 2, 4), 9, 8
    generator = torch.Generator().manual_seed(7)
    for trial in range(6):
        rewards = torch.rand(2 * leaves, generator=generator, dtype=torch.float64)
        if ties:
            rewards = (rewards * 2).floor()  # equal leaves: ties between chains, broken as released
        iteration = 1 + 2 * trial
        rollout = Rollout(
            group_ids=torch.tensor([3, 1]).repeat_interleave(leaves),
            shape="tree",
            final_rewards=rewards,
            num_steps=steps,
            split_steps=splits,
            iteration=iteration,
        )
        algorithm = get_algorithm("branch_grpo", depth_prune=depth_prune, width_prune=width_prune)
        credit = algorithm(rollout)
        for tree in range(2):
            rows = slice(tree * leaves, (tree + 1) * leaves)
            kept = release_pruning(credit.advantages[rows].tolist(), splits, steps, iteration, depth_prune, width_prune)
            edges = 2 + 2 + 4 + 4 + 8 * 5  # nodes per depth 1..9
            for b in range(leaves):
                for k in range(steps):
                    later = sum(1 for s in splits if s > k)
                    share = 2.0**-later  # 1/m: m = 2^(splits after k) leaves share the edge
                    expected = share * edges / len(kept) if (k + 1, b >> later) in kept else 0.0
                    assert credit.weights[rows][b, k].item() == pytest.approx(expected, abs=1e-12), (trial, b, k)


def test_bad_options_are_one_line_with_the_valid_forms() -> None:
    cases = [
        ({"depth_prune": "0,3"}, "unknown depth_prune '0,3'; valid: D1,D2,... (depths >= 1)"),
        ({"depth_prune": "3:slide"}, "optionally with :slide:N or :slide:N:STOP"),
        ({"depth_prune": "3:slide:0"}, "N >= 1"),
        ({"width_prune": "3:0.5"}, "unknown width_prune '3:0.5'; valid: 1:R"),
        ({"width_prune": "1:1.5"}, "0 < R <= 1"),
        ({"split_noise": "paper:0"}, "unknown split_noise 'paper:0'; valid: iid, paper:S, code:C"),
        ({"split_noise": "gauss:2"}, "valid: iid, paper:S, code:C"),
        ({"fusion": "nested"}, "valid: mean, path, path_code"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
            get_algorithm("branch_grpo", **options)
        assert "\n" not in str(error.value)
    # what needs K: the configuration knows it (T = 10, K = 9, S = {0, 2, 4, 6})
    with pytest.raises(ValueError, match=r"depth_prune depths must be in 1\.\.9"):
        TrainConfig.for_task("geneval", algo="branch_grpo", algo_options={"depth_prune": "10"})
    with pytest.raises(ValueError, match="prunes every one of the K = 9 depths"):
        TrainConfig.for_task("geneval", algo="branch_grpo", algo_options={"depth_prune": "1,2,3,4,5,6,7,8,9"})
    with pytest.raises(ValueError, match="split step 8 is the last"):
        options = {"split_steps": [0, 8], "width_prune": "1:0.5"}
        TrainConfig.for_task("geneval", algo="branch_grpo", algo_options=options)
    with pytest.raises(ValueError, match="iteration must be an integer >= 1"):
        spec_tree((0, 2), iteration=0)


def test_only_code_noise_writes_a_note() -> None:
    def notes(options: dict) -> list[str]:
        return TrainConfig.for_task("geneval", algo="branch_grpo", algo_options=options).notes

    assert notes({}) == [] and notes({"split_noise": "paper:4"}) == [] and notes({"split_noise": "iid"}) == []
    (note,) = notes({"split_noise": "code:4"})
    assert "off-policy on purpose" in note and "4x" in note
    assert parse_split_noise("code:1").off_policy is False  # scale 1 is the policy's own noise


# --------------------------------------------------------------------------------------------- split noise


def reference_split_tree(model, prompts, group_ids, *, seed, steps, splits, noise, a=0.7):
    """A tree, node by node, with the section-9.4 sibling noise (window = steps 0 .. steps - 2).

    Draw order: the roots, then per window step the children's eta [P, N_k, *S] and, at a split step under
    ``paper:S``, the siblings' shared xi [P, N_k / 2, *S]. Returns, per group, leaves as (path of (input, child,
    log-prob, mean, std)).
    """
    kind, scale = noise
    sigmas = [float(s) for s in flow_sigmas(steps)]
    groups = sorted(set(group_ids.tolist()))
    gen = torch.Generator().manual_seed(seed)
    roots = torch.randn((len(groups), *SHAPE), generator=gen)
    draws, count = [], 1
    for k in range(steps - 1):
        count *= 2 if k in splits else 1
        eta = torch.randn((len(groups), count, *SHAPE), generator=gen)
        xi = torch.randn((len(groups), count // 2, *SHAPE), generator=gen) if k in splits and kind == "paper" else None
        draws.append((eta, xi))
    trees = []
    for p, group in enumerate(groups):
        prompt = prompts[[int(g) for g in group_ids].index(group)]
        nodes = [(roots[p], [])]
        for j in range(steps - 1):
            new = []
            eta, xi = draws[j]
            for q, (x, path) in enumerate(nodes):
                v = velocity_one(model, x, sigmas[j], prompt)
                mean, std = sde_moments(x, v, sigmas[j], sigmas[j + 1], a)
                for _ in range(2 if j in splits else 1):
                    e = eta[p, len(new)]
                    if j in splits and kind == "paper":
                        e = (xi[p, q] + scale * e) / math.sqrt(1 + scale * scale)
                    elif j in splits and kind == "code":
                        e = scale * e
                    child = mean + std * e
                    new.append((child, [*path, (x, child, log_density(child, mean, std), mean, std)]))
            nodes = new
        trees.append([path for _, path in nodes])
    return trees


def tree_episode(split_noise: str, seed: int = 11):
    splits, steps = (0, 1), 4  # window K = 3, 4 leaves per tree
    prompts = ["a red circle"] * 4 + ["two blue squares"] * 4
    group_ids = torch.tensor([0] * 4 + [1] * 4)
    env = make_env(8, num_steps=steps)
    episode = sample_tree(
        env,
        prompts,
        group_ids,
        split_steps=splits,
        seed=seed,
        sde_kind="flow_grpo",
        noise_level=0.7,
        split_noise=split_noise,
    )
    return env, prompts, group_ids, episode


@pytest.mark.parametrize(("split_noise", "noise"), [("paper:4", ("paper", 4.0)), ("code:4", ("code", 4.0))])
def test_split_noise_matches_a_node_by_node_reference(split_noise: str, noise: tuple) -> None:
    env, prompts, group_ids, episode = tree_episode(split_noise)
    trees = reference_split_tree(env.model, prompts, group_ids, seed=11, steps=4, splits=(0, 1), noise=noise)
    for b, path in enumerate(trees[0] + trees[1]):
        for k, (x, child, log_prob, _, _) in enumerate(path):
            torch.testing.assert_close(episode.inputs[b, k], x, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(episode.outputs[b, k], child, atol=1e-5, rtol=1e-5)
            assert episode.log_probs[b, k].item() == pytest.approx(log_prob, abs=1e-4)


def residuals(env, prompts, episode, k: int) -> torch.Tensor:
    """eps = (child - mean) / std of the distinct children of window step k, [N, *S], from the reference moments."""
    sigmas = [float(s) for s in flow_sigmas(4)]
    found: list[tuple[torch.Tensor, torch.Tensor]] = []  # (child, eps), in row order: siblings end up adjacent
    for b in range(episode.outputs.shape[0]):
        child = episode.outputs[b, k]
        if any(torch.equal(child, seen) for seen, _ in found):  # an edge shared by several leaves: once
            continue
        v = velocity_one(env.model, episode.inputs[b, k], sigmas[k], prompts[b])
        mean, std = sde_moments(episode.inputs[b, k], v, sigmas[k], sigmas[k + 1], 0.7)
        found.append((child, (child - mean) / std))
    return torch.stack([eps for _, eps in found])


def test_paper_noise_correlates_siblings_and_keeps_unit_variance() -> None:
    # S = 1: siblings correlate 1 / (1 + 1) = 0.5. Step 1 splits 2 nodes per tree: 4 sibling pairs of 192 elements
    # (plus 2 pairs at step 0): n = 6 * 192 = 1152 pairs. The Pearson r of n pairs has standard error about
    # (1 - rho^2) / sqrt(n) = 0.75 / 33.9 = 0.022; 4 of them: 0.09. Variance of the 2304 eps: SE sqrt(2 / n) =
    # 0.029; 4 SE: 0.12.
    env, prompts, _, episode = tree_episode("paper:1", seed=2)
    pairs = [residuals(env, prompts, episode, k).view(-1, 2, *SHAPE) for k in (0, 1)]  # siblings are adjacent
    left = torch.cat([p[:, 0].flatten() for p in pairs])
    right = torch.cat([p[:, 1].flatten() for p in pairs])
    assert left.numel() == 6 * 192
    r = torch.corrcoef(torch.stack([left, right]))[0, 1].item()
    assert r == pytest.approx(0.5, abs=0.09)
    assert torch.cat([left, right]).var().item() == pytest.approx(1.0, abs=0.12)
    # iid siblings (the same seed, the default): no correlation (|r| < 4 * 1 / sqrt(1152) = 0.12)
    env, prompts, _, episode = tree_episode("iid", seed=2)
    pairs = [residuals(env, prompts, episode, k).view(-1, 2, *SHAPE) for k in (0, 1)]
    r = torch.corrcoef(torch.stack([torch.cat([p[:, i].flatten() for p in pairs]) for i in (0, 1)]))[0, 1].item()
    assert abs(r) < 0.12


def test_code_noise_scales_split_steps_and_scores_with_the_unscaled_std() -> None:
    # C = 4 at the split steps 0 and 1 (4 + 8 distinct children of 192 elements: n = 2304): the std of eps has a
    # relative standard error of 1 / sqrt(2n) = 1.5%; 4 SE: 6%, so 4 +- 0.24. The step after (2, no split) keeps 1.
    env, prompts, _, episode = tree_episode("code:4", seed=3)
    split = torch.cat([residuals(env, prompts, episode, k).flatten() for k in (0, 1)])
    assert split.numel() == 12 * 192
    assert split.std().item() == pytest.approx(4.0, abs=0.24)
    assert residuals(env, prompts, episode, 2).std().item() == pytest.approx(1.0, abs=4 / math.sqrt(2 * 8 * 192))
    # the recorded log-prob is the density under the unscaled std (about -16/2 per element at C = 4), far below
    # the density the scaled draw actually has
    sigmas = [float(s) for s in flow_sigmas(4)]
    for b in range(8):
        v = velocity_one(env.model, episode.inputs[b, 0], sigmas[0], prompts[b])
        mean, std = sde_moments(episode.inputs[b, 0], v, sigmas[0], sigmas[1], 0.7)
        child = episode.outputs[b, 0]
        assert episode.log_probs[b, 0].item() == pytest.approx(log_density(child, mean, std), abs=1e-4)
        assert episode.log_probs[b, 0].item() < log_density(child, mean, 4 * std) - 5


# ------------------------------------------------------------------------------------- through the learner


@pytest.mark.slow
def test_the_learner_slides_depth_pruning_and_samples_with_the_split_noise() -> None:
    # T = 5, K = 4, S = {0, 2}; "4:slide:1" (STOP = max(S) = 2): iteration 1 prunes depth 3 (shift 1 // 1 = 1),
    # iteration 2 depth 2 and iteration 3 still depth 2 (shift capped at 4 - 2). One tree per iteration.
    options = {"split_steps": [0, 2], "depth_prune": "4:slide:1", "split_noise": "code:4"}
    learner = make_learner("branch_grpo", options, iterations=3, prompts_per_iteration=1)
    assert learner.shape_options == {"split_steps": (0, 2), "split_noise": "code:4"}
    pruned = []
    for iteration in (1, 2, 3):
        result = learner.iteration(iteration)
        weights = result.record["weights"]  # [B, K]
        pruned.append((weights == 0).all(dim=0).nonzero().flatten().tolist())
        assert result.metrics["ratio_dev_first_update"] < 1e-5  # the update scores with the sampling (unscaled) std
        # the offline replay of the record (analysis) gives the algorithm the record's iteration, as training did
        replayed = learner.algorithm(Record(iteration, [], result.record, learner.algorithm.rollout_shape).rollout())
        assert torch.equal(replayed.weights, weights)
    assert pruned == [[2], [1], [1]]
    # code:4 at the split steps: their recorded log-probs sit far below the other steps' (about -8 per element more)
    log_probs = result.record["log_probs"]  # [B, K]
    assert (log_probs[:, [0, 2]].mean() - log_probs[:, [1, 3]].mean()).item() < -4


# -------------------------------------------------------------------------- creditzoo train with the options

runner = CliRunner()


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"split_noise": "code:4", "fusion": "path_code", "depth_prune": "3:slide:1", "width_prune": "2:0.5"},
        {"split_noise": "paper:4", "depth_prune": "4", "width_prune": "1:0.5"},
    ],
)
def test_train_on_geneval_runs_with_the_new_options(tmp_path, options: dict) -> None:
    # T = 5, K = 4: the default split set {0, 2} makes 4 leaves, the group size (not given: the tree sets it)
    config = tmp_path / "branch.toml"
    config.write_text("[algo_options]\n" + "".join(f'{key} = "{value}"\n' for key, value in options.items()))
    run = tmp_path / "run"
    small = ["--steps", "5", "--prompts-per-iteration", "1", "--eval-every", "0", "--eval-steps", "2"]
    small += ["--final-eval-steps", "2", "--final-eval-samples", "1", "--eval-min-images-per-category", "1"]
    args = ["train", "--algo", "branch_grpo", "--env", "geneval", "--iterations", "1", *small]
    result = runner.invoke(app, [*args, "--config", str(config), "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    stored = json.loads((run / "config.json").read_text())
    assert stored["algo_options"] == options and stored["group_size"] == 4
    assert ("notes" in stored) == options["split_noise"].startswith("code:")
    if "notes" in stored:
        assert "off-policy on purpose" in stored["notes"][0]
    metrics = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["ratio_dev_first_update"] < 1e-4  # sampling and the update score with the same (unscaled) std
    from creditzoo.analysis import load_records

    weights = load_records(run)[0].tensors["weights"]
    assert (weights == 0).any() and weights.sum().item() == pytest.approx(12.0)  # 12 edges, their total kept
