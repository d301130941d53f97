"""Anchor-branch and tree rollouts against an independent one-sample-at-a-time sampler written from the spec."""

import math

import pytest
import torch
from tiny_model import TinyFlowModel, brightness_reward

from creditzoo.envs import DenoisingConfig, DenoisingEnv
from creditzoo.sampling import flow_sigmas
from creditzoo.shapes.anchor import completion_grid, sample_anchor_branches
from creditzoo.shapes.tree import sample_tree

SHAPE = (3, 8, 8)


class CountingModel(TinyFlowModel):
    """The tiny model, counting calls (lockstep depth) and samples evaluated."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.samples = 0

    def velocity(self, latents, sigma, cond, *, guidance_scale: float = 1.0):
        self.calls += 1
        self.samples += latents.shape[0]
        return super().velocity(latents, sigma, cond, guidance_scale=guidance_scale)


def make_env(batch: int, **overrides) -> DenoisingEnv:
    config = DenoisingConfig(
        num_steps=overrides.pop("num_steps", 6), max_batch=overrides.pop("max_batch", 7), **overrides
    )
    return DenoisingEnv(CountingModel(), brightness_reward, num_envs=batch, config=config)


# ------------------------------------------------------------------ the reference, one sample at a time


def sde_moments(x, v, sigma, sigma_next, a):
    """Section 1, Flow-GRPO SDE, written out for one sample."""
    dt = sigma_next - sigma
    sigma_hat = sigma_next if sigma == 1.0 else sigma
    s = a * math.sqrt(sigma / (1 - sigma_hat))
    mean = x * (1 + s * s * dt / (2 * sigma)) + v * (1 + s * s * (1 - sigma) / (2 * sigma)) * dt
    return mean, s * math.sqrt(-dt)


def log_density(value, mean, std):
    """Exact Gaussian log-density averaged over elements."""
    return float((-((value - mean) ** 2) / (2 * std * std) - math.log(std) - 0.5 * math.log(2 * math.pi)).mean())


@torch.no_grad()
def velocity_one(model, x, sigma, prompt):
    cond = model.encode_prompts([prompt])
    return TinyFlowModel.velocity(model, x[None], torch.tensor([sigma]), cond)[0]


def reward_one(model, x, prompt):
    return float(brightness_reward(model.decode(x[None]), [prompt])[0])


def complete_one(model, x, grid, sigmas, prompt):
    for here, there in zip(grid[:-1], grid[1:], strict=True):
        x = x + (sigmas[there] - sigmas[here]) * velocity_one(model, x, sigmas[here], prompt)
    return reward_one(model, x, prompt)


def reference_anchor(model, prompts, group_ids, *, seed, steps, start, size, grids, a=0.7):
    """Anchor-branch rollout, prompt by prompt and child by child (docs/math.md section 9.3)."""
    sigmas = [float(s) for s in flow_sigmas(steps)]
    batch = len(prompts)
    groups = sorted(set(group_ids.tolist()))
    gen = torch.Generator().manual_seed(seed)
    roots = torch.randn((len(groups), *SHAPE), generator=gen)
    eps = [torch.randn((batch, *SHAPE), generator=gen) for _ in range(size)]
    rewards = torch.zeros(batch, size, len(grids(1)))
    inputs, outputs = torch.zeros(batch, size, *SHAPE), torch.zeros(batch, size, *SHAPE)
    log_probs, final = torch.zeros(batch, size), torch.zeros(batch)
    for p, group in enumerate(groups):
        rows = [b for b in range(batch) if int(group_ids[b]) == group]
        prompt = prompts[rows[0]]
        o = roots[p]
        for j in range(steps):
            v = velocity_one(model, o, sigmas[j], prompt)
            if start <= j < start + size:
                k = j - start
                mean, std = sde_moments(o, v, sigmas[j], sigmas[j + 1], a)
                for b in rows:
                    child = mean + std * eps[k][b]
                    inputs[b, k], outputs[b, k] = o, child
                    log_probs[b, k] = log_density(child, mean, std)
                    for level, grid in enumerate(grids(j + 1)):
                        rewards[b, k, level] = complete_one(model, child, grid, sigmas, prompt)
            o = o + (sigmas[j + 1] - sigmas[j]) * v
        final[rows] = reward_one(model, o, prompt)
    return inputs, outputs, log_probs, rewards, final


def reference_tree(model, prompts, group_ids, *, seed, steps, start, size, splits, a=0.7):
    """Tree rollout, node by node (docs/math.md section 9.4); leaves in generation order."""
    sigmas = [float(s) for s in flow_sigmas(steps)]
    groups = sorted(set(group_ids.tolist()))
    gen = torch.Generator().manual_seed(seed)
    roots = torch.randn((len(groups), *SHAPE), generator=gen)
    eps, count = [], 1
    for k in range(size):
        count *= 2 if k in splits else 1
        eps.append(torch.randn((len(groups), count, *SHAPE), generator=gen))
    leaves = []  # per group: list of (final latent, path of (input, output, log_prob))
    for p, group in enumerate(groups):
        prompt = prompts[[int(g) for g in group_ids].index(group)]
        nodes = [(roots[p], [])]
        for j in range(steps):
            new = []
            for x, path in nodes:
                v = velocity_one(model, x, sigmas[j], prompt)
                if not start <= j < start + size:
                    new.append((x + (sigmas[j + 1] - sigmas[j]) * v, path))
                    continue
                k = j - start
                mean, std = sde_moments(x, v, sigmas[j], sigmas[j + 1], a)
                for _ in range(2 if k in splits else 1):
                    child = mean + std * eps[k][p, len(new)]
                    new.append((child, [*path, (x, child, log_density(child, mean, std))]))
            nodes = new
        leaves.append([(x, path, reward_one(model, x, prompt)) for x, path in nodes])
    return leaves


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    ("mode", "granularities", "window"),
    [
        ("ode", None, (0, 5)),
        ("ode:2", None, (1, 3)),
        ("x0", None, (0, 5)),
        ("ode", (1, 2), (0, 5)),
        ("ode", (3,), (1, 4)),
    ],
)
def test_anchor_rollout_matches_one_by_one_reference(mode, granularities, window) -> None:
    start, size = window
    prompts = ["a red circle"] * 3 + ["two blue squares"] * 3
    group_ids = torch.tensor([4, 4, 4, 1, 1, 1])
    env = make_env(6, completion=mode, window_start=start, window_size=size)
    episode = sample_anchor_branches(
        env, prompts, group_ids, seed=11, sde_kind="flow_grpo", noise_level=0.7, granularities=granularities
    )

    def grids(first):
        if granularities is not None:
            if first == 6:
                return [[6] for _ in granularities]
            # one Euler step first -> first + 1, then stride g from first + 1, ending at 6 (section 9.3)
            return [[first, *range(first + 1, 7, g)] + ([6] if (6 - first - 1) % g else []) for g in granularities]
        if mode == "x0":
            return [[first, 6] if first < 6 else [6]]
        if mode == "ode:2" and 6 - first > 2:
            return [[first, round(first + (6 - first) / 2), 6]]
        return [list(range(first, 7))]

    inputs, outputs, log_probs, rewards, final = reference_anchor(
        env.model, prompts, group_ids, seed=11, steps=6, start=start, size=size, grids=grids
    )
    assert episode.shape == "anchor" and episode.split_steps is None
    torch.testing.assert_close(episode.inputs, inputs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(episode.outputs, outputs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(episode.log_probs, log_probs, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(episode.branch_rewards, rewards, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(episode.branch_rewards_clean, rewards, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(episode.final_rewards, final, atol=1e-5, rtol=1e-5)
    # Every child of a group differs, and the groups' anchors differ.
    assert (episode.outputs[0, 0] - episode.outputs[1, 0]).abs().max() > 0.1
    assert (episode.inputs[0, 0] - episode.inputs[3, 0]).abs().max() > 0.1


def test_anchor_counts_and_lockstep_depth() -> None:
    steps, start, size, children, prompts_count = 6, 0, 5, 3, 2
    prompts = ["a red circle"] * children + ["two blue squares"] * children
    env = make_env(6, max_batch=None)
    episode = sample_anchor_branches(
        env, prompts, torch.tensor([0, 0, 0, 1, 1, 1]), seed=0, sde_kind="flow_grpo", noise_level=0.7
    )
    # Section 7.3: T anchor calls per prompt + C * sum_k (T - (w + k + 1)) completion calls.
    extra = sum(steps - (start + k + 1) for k in range(size))
    assert episode.info["model_evals"] == prompts_count * steps
    assert episode.info["completion_evals"] == prompts_count * children * extra == 90
    assert env.model.samples == prompts_count * steps + 90
    assert episode.info["reward_calls"] == prompts_count * children * size + prompts_count  # children + anchors
    assert env.model.calls == steps  # one model call per grid step: lockstep
    # G2RPO strides: per child and stride, one Euler step j+1 -> j+2, then ceil((T - j - 2) / g) more.
    env = make_env(6, max_batch=None)
    episode = sample_anchor_branches(
        env,
        prompts,
        torch.tensor([0, 0, 0, 1, 1, 1]),
        seed=0,
        sde_kind="flow_grpo",
        noise_level=0.7,
        granularities=(1, 2, 4),
    )
    extra = sum(1 + math.ceil((steps - start - k - 2) / g) for k in range(size) for g in (1, 2, 4))
    assert episode.info["completion_evals"] == prompts_count * children * extra
    assert episode.info["reward_calls"] == prompts_count * children * size * 3 + prompts_count
    assert env.model.calls == steps and episode.branch_rewards.shape == (6, size, 3)


def test_anchor_with_guidance_counts_two_evals_per_sample() -> None:
    env = make_env(4, guidance_scale=2.0, max_batch=None)
    episode = sample_anchor_branches(
        env,
        ["a red circle"] * 2 + ["a blue circle"] * 2,
        torch.tensor([0, 0, 1, 1]),
        seed=0,
        sde_kind="flow_grpo",
        noise_level=0.7,
    )
    assert episode.info["model_evals"] == 2 * 2 * 6
    assert episode.info["completion_evals"] == 2 * 2 * 2 * sum(6 - k - 1 for k in range(5))


@pytest.mark.parametrize(("splits", "window"), [((0, 2), (0, 4)), ((1,), (1, 3)), ((0, 1, 4), (0, 5))])
def test_tree_rollout_matches_one_by_one_reference(splits, window) -> None:
    start, size = window
    leaves_per_tree = 2 ** len(splits)
    prompts = ["a red circle"] * leaves_per_tree + ["two blue squares"] * leaves_per_tree
    group_ids = torch.tensor([7] * leaves_per_tree + [2] * leaves_per_tree)
    env = make_env(len(prompts), window_start=start, window_size=size)
    episode = sample_tree(env, prompts, group_ids, split_steps=splits, seed=5, sde_kind="flow_grpo", noise_level=0.7)
    reference = reference_tree(env.model, prompts, group_ids, seed=5, steps=6, start=start, size=size, splits=splits)
    rows = [leaf for tree in (reference[1], reference[0]) for leaf in tree]  # group 7 sorts after group 2
    assert episode.shape == "tree" and episode.split_steps == tuple(sorted(splits)) and episode.branch_rewards is None
    for b, (_, path, reward) in enumerate(rows):
        assert len(path) == size
        for k, (x, child, log_prob) in enumerate(path):
            torch.testing.assert_close(episode.inputs[b, k], x, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(episode.outputs[b, k], child, atol=1e-5, rtol=1e-5)
            assert episode.log_probs[b, k].item() == pytest.approx(log_prob, abs=1e-4)
        assert episode.final_rewards[b].item() == pytest.approx(reward, abs=1e-5)
    # Leaves 0 and 1 differ in the last split's bit only: same edges before it, different from it on.
    last = max(splits)
    torch.testing.assert_close(episode.outputs[0, :last], episode.outputs[1, :last])
    assert (episode.outputs[0, last] - episode.outputs[1, last]).abs().max() > 0.01


def test_tree_counts_and_lockstep_depth() -> None:
    steps, start, splits = 6, 0, (0, 2)
    env = make_env(8, max_batch=None)
    episode = sample_tree(
        env,
        ["a red circle"] * 4 + ["a blue circle"] * 4,
        torch.tensor([0] * 4 + [1] * 4),
        split_steps=splits,
        seed=0,
        sde_kind="flow_grpo",
        noise_level=0.7,
    )
    # Nodes standing at grid step j: 2^(number of splits among window steps before j).
    nodes = [2 ** sum(1 for s in splits if start + s < j) for j in range(steps)]
    assert nodes == [1, 2, 2, 4, 4, 4]
    assert episode.info["model_evals"] == 2 * sum(nodes)
    assert episode.info["completion_evals"] == 0
    assert episode.info["reward_calls"] == 8
    assert env.model.calls == steps


def test_bad_tree_and_granularity_input_is_one_line() -> None:
    env = make_env(6)
    prompts, groups = ["a red circle"] * 3 + ["a blue circle"] * 3, torch.tensor([0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match=r"group size must be 4, got 3 \(a tree's group size is a power") as error:
        sample_tree(env, prompts, groups, split_steps=(0, 1), seed=0, sde_kind="flow_grpo", noise_level=0.7)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"window steps in 0\.\.4"):
        sample_tree(env, prompts, groups, split_steps=(5,), seed=0, sde_kind="flow_grpo", noise_level=0.7)
    with pytest.raises(ValueError, match="integers >= 1"):
        sample_anchor_branches(env, prompts, groups, seed=0, sde_kind="flow_grpo", noise_level=0.7, granularities=(0,))


def test_completion_grids() -> None:
    # G2RPO: child at j + 1 = 3 takes one step to 4, then strides 3 from 4 (released [:j+2] then [j+2::g])
    assert completion_grid(3, 10, granularity=3) == [3, 4, 7, 10]
    assert completion_grid(4, 10, granularity=3) == [4, 5, 8, 10]
    assert completion_grid(2, 10, granularity=2) == [2, 3, 5, 7, 9, 10]
    assert completion_grid(9, 10, granularity=2) == [9, 10]
    assert completion_grid(10, 10, granularity=2) == [10]
    assert completion_grid(7, 10, mode="x0") == [7, 10]
    assert completion_grid(7, 10, mode="ode") == [7, 8, 9, 10]
    assert completion_grid(2, 10, mode="ode:2") == [2, 6, 10]


@pytest.mark.gpu
def test_branched_rollouts_on_cuda_match_the_cpu() -> None:
    """Every tensor the samplers build follows the model's device; the numbers match the CPU's."""
    prompts, group_ids = ["a red circle"] * 2 + ["a blue circle"] * 2, torch.tensor([0, 0, 1, 1])
    results = {}
    for device in ("cpu", "cuda"):
        env = make_env(4, completion="ode:2")
        env.model.to(device)
        anchor = sample_anchor_branches(
            env, prompts, group_ids, seed=3, sde_kind="flow_grpo", noise_level=0.7, granularities=(1, 3)
        )
        tree = sample_tree(env, prompts, group_ids, split_steps=(1,), seed=3, sde_kind="flow_grpo", noise_level=0.7)
        assert anchor.inputs.device.type == device and tree.outputs.device.type == device
        results[device] = (anchor, tree)
    for cpu, cuda in zip(results["cpu"], results["cuda"], strict=True):
        torch.testing.assert_close(cuda.outputs.cpu(), cpu.outputs, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(cuda.log_probs.cpu(), cpu.log_probs, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(cuda.final_rewards, cpu.final_rewards, atol=1e-4, rtol=1e-4)
