"""The denoising environment: gymnasium contract, determinism, lockstep branching."""

import gymnasium
import pytest
import torch
from tiny_model import TinyFlowModel, brightness_reward

from creditzoo.envs import DenoisingConfig, DenoisingEnv, parse_completion_mode
from creditzoo.sampling import ode_step, sde_step

PROMPTS = ["a red circle", "a red circle", "two blue squares", "two blue squares"]


def make(completion="ode", **overrides) -> DenoisingEnv:
    config = DenoisingConfig(num_steps=overrides.pop("num_steps", 6), completion=completion, **overrides)
    return DenoisingEnv(TinyFlowModel(), brightness_reward, num_envs=4, config=config)


def run_episode(env: DenoisingEnv, seed: int = 0, sde: bool = True):
    obs, info = env.reset(seed=seed, options={"prompts": PROMPTS})
    gen = torch.Generator().manual_seed(seed + 1)
    states = [obs["latent"]]
    for j in range(env.config.num_steps):
        v = env.velocity()
        sigma, nxt = env.sigmas[j], env.sigmas[j + 1]
        if sde and env.window.is_sde(j):
            action = sde_step(v, obs["latent"], sigma, nxt, noise_level=0.7, generator=gen).prev_sample
        else:
            action = ode_step(v, obs["latent"], sigma, nxt)
        obs, reward, terminated, truncated, info = env.step(action)
        states.append(obs["latent"])
    return states, reward, terminated, info


def test_reset_and_step_contract() -> None:
    env = make()
    obs, info = env.reset(seed=0, options={"prompts": PROMPTS})
    assert set(obs) == {"latent", "step", "sigma"}
    assert obs["latent"].shape == (4, 3, 8, 8) and obs["step"].tolist() == [0] * 4
    assert obs["sigma"].tolist() == [1.0] * 4 and info["prompts"] == PROMPTS
    assert env.single_observation_space["latent"].shape == (3, 8, 8)
    obs, reward, terminated, truncated, info = env.step(obs["latent"])
    assert reward.tolist() == [0.0] * 4 and not terminated.any() and not truncated.any() and info == {}
    assert obs["step"].tolist() == [1] * 4
    with pytest.raises(ValueError, match=r"shape \[4, 3, 8, 8\]"):
        env.step(torch.zeros(3, 3, 8, 8))
    with pytest.raises(ValueError, match="4 prompts"):
        env.reset(seed=0, options={"prompts": PROMPTS[:2]})


def test_terminal_step_reports_rewards_and_refuses_more_steps() -> None:
    env = make()
    states, reward, terminated, info = run_episode(env)
    assert terminated.all()
    assert info["completion_rewards"].shape == (4, env.window.size + 1)
    torch.testing.assert_close(info["completion_rewards"][:, -1], reward)
    torch.testing.assert_close(reward, brightness_reward(env.model.decode(states[-1]), PROMPTS))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(states[-1])


def test_same_seed_same_episode() -> None:
    a = run_episode(make(), seed=3)
    b = run_episode(make(), seed=3)
    c = run_episode(make(), seed=4)
    assert torch.equal(a[0][-1], b[0][-1]) and torch.equal(a[3]["completion_rewards"], b[3]["completion_rewards"])
    assert not torch.equal(a[0][0], c[0][0])


@pytest.mark.parametrize("mode", ["ode", "ode:2", "x0"])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_lockstep_completions_equal_one_by_one(mode: str, guidance: float) -> None:
    env = make(mode, guidance_scale=guidance, window_start=1, window_size=4, shift=3.0)
    states, _, _, info = run_episode(env)
    slow = []
    for k in range(env.window.size):
        j = env.window.start + k
        for b in range(4):
            image = env.complete(states[j][b : b + 1], j, torch.tensor([b]), mode)
            slow.append(brightness_reward(image, PROMPTS[b : b + 1]))
    slow = torch.cat(slow).view(env.window.size, 4).T
    torch.testing.assert_close(info["completion_rewards"][:, :-1], slow, atol=1e-5, rtol=1e-5)


def test_completion_costs() -> None:
    T = 6
    counts = {}
    for mode in [None, "x0", "ode:2", "ode"]:
        env = make(mode, num_steps=T)
        *_, info = run_episode(env)
        counts[mode] = (info["model_evals"], info["completion_evals"], info["reward_calls"])
    B, K = 4, T - 1
    assert counts[None] == (B * T, 0, B)  # skipped when the algorithm does not need completions
    assert counts["x0"] == (B * T, 0, B * (K + 1))
    # ode: branch from z_k (grid step k) takes T - k Euler steps; its first reuses the trajectory's velocity
    assert counts["ode"][1] == B * sum(T - k - 1 for k in range(K))
    assert counts["ode:2"][1] == B * sum(1 if T - k >= 2 else 0 for k in range(K))
    assert "completion_rewards" not in run_episode(make(None))[3]


def test_registered_with_gymnasium() -> None:
    assert "creditzoo/GenEval-v0" in gymnasium.registry


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        DenoisingConfig(num_steps=4, window_size=5)
    with pytest.raises(ValueError, match="valid forms: ode, ode:N, x0"):
        DenoisingConfig(completion="ode:0")
    assert str(parse_completion_mode("ODE:3")) == "ode:3"
