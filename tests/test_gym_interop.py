"""gymnasium interop: registration on ``import creditzoo``, check_env, and gymnasium's own vector wrappers."""

import subprocess
import sys
import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import vector as vw

import creditzoo  # noqa: F401  (registers the ids)
from creditzoo.envs import DenoisingConfig, DenoisingEnv, NumpyDenoisingEnv
from creditzoo.sampling import ode_step

GYM_ID = "creditzoo/GenEval-v0"
STEPS = 4
CONFIG = DenoisingConfig(num_steps=STEPS)  # the toy model, 4 steps, ODE completions: well under a second


@pytest.mark.slow
def test_import_creditzoo_alone_registers_the_ids_and_imports_nothing_heavy() -> None:
    heavy = ("diffusers", "transformers", "seaborn", "peft")
    code = (
        "import sys, gymnasium, creditzoo; "
        f"print('{GYM_ID}' in gymnasium.registry, [m for m in {heavy!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "[]"]


def test_single_env_passes_gymnasiums_env_checker() -> None:
    env = gymnasium.make(GYM_ID, config=CONFIG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    # the latent space is unbounded (Box(-inf, inf)) on purpose; every other warning is a finding
    others = [str(w.message) for w in caught if "infinity" not in str(w.message)]
    assert others == []
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and info["prompt"]
    for _ in range(STEPS):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
    assert terminated and not truncated and isinstance(reward, float)
    assert reward == pytest.approx(float(info["final_rewards"]))
    assert info["completion_rewards"].shape == (STEPS,)  # K + 1 with the default window K = T - 1


def test_make_vec_is_numpy_facing_and_episode_statistics_and_normalize_reward_run_an_episode() -> None:
    base = gymnasium.make_vec(GYM_ID, num_envs=4, config=CONFIG)
    assert isinstance(base, NumpyDenoisingEnv)
    env = vw.ClipAction(vw.NormalizeReward(vw.RecordEpisodeStatistics(base)))
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["prompts"].shape == (4,)
    for j in range(STEPS):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and reward.shape == (4,)
        assert terminated.all() == (j == STEPS - 1) and not truncated.any()
    # RecordEpisodeStatistics sits under NormalizeReward, so it saw the raw rewards: zero, then the final reward
    np.testing.assert_allclose(info["episode"]["r"], info["final_rewards"], rtol=1e-6)
    assert info["episode"]["l"].tolist() == [STEPS] * 4 and info["_episode"].all()
    # NEXT_STEP autoreset: the step after the last starts a new episode and ignores its action
    obs, reward, terminated, _, info = env.step(env.action_space.sample())
    assert obs["step"].tolist() == [0] * 4 and not reward.any() and not terminated.any() and "prompts" in info


def test_dict_info_to_list_and_normalize_observation_run() -> None:
    env = vw.DictInfoToList(gymnasium.make_vec(GYM_ID, num_envs=2, config=CONFIG))
    obs, infos = env.reset(seed=1)
    assert [set(i) for i in infos] == [{"prompts"}] * 2
    for _ in range(STEPS):
        obs, reward, terminated, _, infos = env.step(env.action_space.sample())
    assert len(infos) == 2 and terminated.all()
    assert [float(i["final_rewards"]) for i in infos] == pytest.approx(reward.tolist())
    assert infos[0]["images"].shape == (3, 32, 32) and set(infos[1]["seconds"]) >= {"sampling", "reward"}
    # NormalizeObservation takes a Box: flatten the dict observation first
    flat = vw.NormalizeObservation(vw.FlattenObservation(gymnasium.make_vec(GYM_ID, num_envs=2, config=CONFIG)))
    obs, _ = flat.reset(seed=0)
    obs, *_ = flat.step(flat.action_space.sample())
    assert obs.shape == (2, flat.single_observation_space.shape[0]) and np.isfinite(obs).all()


def test_numpy_view_replays_the_torch_environment_number_for_number() -> None:
    prompts = ["a red circle", "two squares", "a green triangle", "a red circle"]
    numpy_env = gymnasium.make_vec(GYM_ID, num_envs=4, config=CONFIG)
    torch_env = gymnasium.make_vec(GYM_ID, num_envs=4, config=CONFIG, arrays="torch")
    assert isinstance(torch_env, DenoisingEnv)
    obs_n, _ = numpy_env.reset(seed=5, options={"prompts": prompts})
    obs_t, _ = torch_env.reset(seed=5, options={"prompts": prompts})
    for j in range(STEPS):
        sigma, nxt = torch_env.sigmas[j], torch_env.sigmas[j + 1]
        action = ode_step(torch_env.velocity(), obs_t["latent"], sigma, nxt)
        np.testing.assert_array_equal(numpy_env.velocity(), torch_env.velocity().numpy())  # same process and batch
        obs_n, reward_n, *_, info_n = numpy_env.step(action.numpy())
        obs_t, reward_t, *_, info_t = torch_env.step(action)
        np.testing.assert_array_equal(obs_n["latent"], obs_t["latent"].numpy())
    np.testing.assert_array_equal(reward_n, reward_t.numpy())
    np.testing.assert_array_equal(info_n["completion_rewards"], info_t["completion_rewards"].numpy())
    assert info_n["model_evals"].tolist() == [info_t["model_evals"]] * 4  # a batch total, repeated per row


def test_sync_vectorization_of_the_single_env_runs_an_episode() -> None:
    env = vw.RecordEpisodeStatistics(
        gymnasium.make_vec(GYM_ID, num_envs=2, vectorization_mode="sync", config=DenoisingConfig(num_steps=2))
    )
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        obs, reward, terminated, _, info = env.step(env.action_space.sample())
    assert terminated.all() and env.observation_space.contains(obs)
    np.testing.assert_allclose(info["episode"]["r"], reward)


def test_torch_environment_takes_a_numpy_action() -> None:
    env = gymnasium.make_vec(GYM_ID, num_envs=2, config=CONFIG, arrays="torch")
    env.reset(seed=0, options={"prompts": ["a red circle"] * 2})
    action = env.action_space.sample()  # float32 numpy [2, 3, 32, 32]
    obs, *_ = env.step(action)
    assert isinstance(obs["latent"], torch.Tensor) and torch.equal(obs["latent"], torch.from_numpy(action))


def test_bad_arrays_and_partial_reset_mask_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown arrays 'jax'; valid: numpy, torch"):
        gymnasium.make_vec(GYM_ID, num_envs=2, config=CONFIG, arrays="jax")
    env = gymnasium.make_vec(GYM_ID, num_envs=2, config=CONFIG)
    with pytest.raises(ValueError, match="lockstep"):
        env.reset(seed=0, options={"reset_mask": np.array([True, False])})
    with pytest.raises(ValueError, match=r"shape \[2, 3, 32, 32\]"):
        env.reset(seed=0)
        env.step(np.zeros((1, 3, 32, 32), dtype=np.float32))
