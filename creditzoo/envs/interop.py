"""gymnasium interop: a numpy-facing view of :class:`DenoisingEnv`, and one trajectory as a ``gymnasium.Env``.

:class:`DenoisingEnv` is torch-native (tensors in and out, latents on the model's device) and the learner drives it
as it is. gymnasium's own vector wrappers (``RecordEpisodeStatistics``, ``NormalizeReward``, ``ClipAction``,
``DictInfoToList``, ...) and its checkers expect something else: numpy arrays, an ``info`` dict in the vector
convention (one entry per sub-environment, with a ``_key`` mask), resets that need no options, and an environment
that resets itself when an episode ends. The two classes here give that, on top of an unchanged ``DenoisingEnv``:

- :class:`NumpyDenoisingEnv` (what ``gymnasium.make_vec`` returns by default): the same B lockstep trajectories,
  numpy in and out, ``AutoresetMode.NEXT_STEP``, prompts drawn from the task's train prompts when none are given;
- :class:`DenoisingEpisodeEnv` (what ``gymnasium.make`` returns): one trajectory as a plain ``gymnasium.Env``, so
  that ``gymnasium.utils.env_checker.check_env`` and ``make_vec(..., vectorization_mode="sync")`` work.

Both copy data at the boundary (an observation never aliases the environment's state), and both move the latents
to the CPU: for GPU training keep the torch-native environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorWrapper

from creditzoo.envs.denoising import DenoisingEnv


def to_numpy(value: Any) -> Any:
    """A copy of ``value`` with every torch tensor turned into a numpy array (dicts, lists and tuples recursed).

    Floating tensors of low precision (bfloat16, float16) become float32; a list of strings becomes an array of
    strings; anything else is returned as it is.
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.is_floating_point() and tensor.dtype != torch.float64:
            tensor = tensor.float()
        return tensor.numpy().copy()
    if isinstance(value, dict):
        return {key: to_numpy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, str) for item in value):
            return np.array(value)
        return type(value)(to_numpy(item) for item in value)
    return value


def vector_info(info: dict, num_envs: int) -> dict:
    """``info`` of a :class:`DenoisingEnv` in gymnasium's vector convention, as numpy.

    An entry with one row per sub-environment (a tensor or list of length B) becomes an array [B, ...] with a
    ``_key`` mask of B True values; a value for the whole batch (the counters ``model_evals``, ``seconds``, ...) is
    repeated in every row; a nested dict is converted the same way, recursively.

    Args:
        info: the ``info`` dict returned by ``DenoisingEnv.reset`` or ``step``.
        num_envs: B.
    """
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = vector_info(value, num_envs)
            continue
        array = np.asarray(to_numpy(value))
        if array.ndim == 0 or array.shape[0] != num_envs:
            array = np.repeat(array[None], num_envs, axis=0)  # a batch total: the same in every row
        out[key] = array
        out[f"_{key}"] = np.ones(num_envs, dtype=bool)
    return out


def _action_tensor(action: Any, shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 CPU tensor copy of ``action`` (numpy, a list, or a tensor), checked against ``shape``."""
    array = np.array(to_numpy(action), dtype=np.float32)
    if array.shape != shape:
        raise ValueError(f"action must be the next latent of shape {list(shape)}, got {list(array.shape)}")
    return torch.from_numpy(array)


def _draw_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**62))


class NumpyDenoisingEnv(VectorWrapper):
    """B lockstep trajectories of a :class:`DenoisingEnv`, numpy in and out, as gymnasium's vector wrappers expect.

    Observations are the same dict as the wrapped environment's, as numpy: ``latent`` float32 [B, *S], ``step``
    int64 [B] and ``sigma`` float32 [B], inside ``observation_space``. Actions are float32 arrays [B, *S] (anything
    ``np.asarray`` takes, e.g. ``action_space.sample()``). Rewards are float32 [B], ``terminated``/``truncated``
    bool [B]. ``info`` follows gymnasium's vector convention (:func:`vector_info`).

    Resets: ``reset(seed=s)`` draws B prompts from ``prompts`` and the initial noise, both from ``s``: with the
    same prompts (``options={"prompts": [...]}``) and seed, the episode is the wrapped environment's, number for
    number. ``options["reset_mask"]``, if given, must be all True: the trajectories move in lockstep, so they are
    reset together. Autoreset is ``NEXT_STEP``: the ``step`` after the last one ignores its action and starts a new
    episode (fresh prompts and noise, drawn from the generator the last seeded reset started).
    """

    def __init__(self, env: DenoisingEnv, prompts: Sequence[str]) -> None:
        """Wrap ``env``.

        Args:
            env: the torch-native environment.
            prompts: the prompts a reset without ``options["prompts"]`` draws from (with replacement).
        """
        super().__init__(env)
        if not prompts:
            raise ValueError("NumpyDenoisingEnv needs at least one prompt to draw resets from")
        self.prompt_pool = tuple(prompts)
        self.metadata = {**env.metadata, "autoreset_mode": AutoresetMode.NEXT_STEP}
        self._rng = np.random.default_rng()
        self._episode_over = False

    @property
    def sigmas(self) -> np.ndarray:
        """The sigma grid [T + 1], float32."""
        return to_numpy(self.env.sigmas)

    def velocity(self) -> np.ndarray:
        """The model's velocity at the current state [B, *S], float32 (see :meth:`DenoisingEnv.velocity`)."""
        return to_numpy(self.env.velocity())

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start B trajectories; ``options`` may hold ``prompts`` (B strings) and ``noise`` (x_T [B, *S]).

        Returns:
            (observation, info), numpy; ``info["prompts"]`` holds the B prompts.
        """
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is not None and not np.all(mask):
            raise ValueError("the trajectories move in lockstep: options['reset_mask'] must be all True or left out")
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if options.get("prompts") is None:
            picks = self._rng.integers(0, len(self.prompt_pool), size=self.num_envs)
            options["prompts"] = [self.prompt_pool[i] for i in picks]
        if options.get("noise") is not None:
            options["noise"] = torch.as_tensor(np.asarray(options["noise"], dtype=np.float32))
        obs, info = self.env.reset(seed=seed if seed is not None else _draw_seed(self._rng), options=options)
        self._episode_over = False
        return to_numpy(obs), vector_info(info, self.num_envs)

    def step(self, actions: Any) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Move every trajectory to the latent ``actions`` [B, *S]; after a last step, start a new episode instead.

        Returns:
            (observation, reward float32 [B], terminated bool [B], truncated bool [B], info).
        """
        if self._episode_over:  # NEXT_STEP autoreset: this step's action is ignored
            obs, info = self.reset()
            done = np.zeros(self.num_envs, dtype=bool)
            return obs, np.zeros(self.num_envs, dtype=np.float32), done, done.copy(), info
        action = _action_tensor(actions, (self.num_envs, *self.env.single_action_space.shape))
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._episode_over = bool(terminated.any() or truncated.any())
        return (
            to_numpy(obs),
            to_numpy(reward).astype(np.float32),
            to_numpy(terminated),
            to_numpy(truncated),
            vector_info(info, self.num_envs),
        )


class DenoisingEpisodeEnv(gymnasium.Env):
    """One trajectory of a :class:`DenoisingEnv` as a plain ``gymnasium.Env``, numpy in and out.

    Observation: ``{"latent": float32 [*S], "step": int64 scalar, "sigma": float32 array of shape ()}``; action:
    the next latent, float32 [*S]; reward: a float, zero until the last step. ``reset(seed=s)`` draws the prompt
    from the task's train prompts and the initial noise, both from ``s`` (``options={"prompt": "..."}`` picks the
    prompt). At the last step ``info`` holds this trajectory's ``final_rewards``, ``completion_rewards`` [K+1] (with
    a completion mode), ``images`` [3, H, W] and the counters. No autoreset: call ``reset`` after the last step.

    Batch 1 means one model call per trajectory and step: to sample many trajectories use the vector environment
    (``gymnasium.make_vec``), which batches them.
    """

    metadata = {"render_modes": []}

    def __init__(self, env: DenoisingEnv, prompts: Sequence[str]) -> None:
        """Wrap ``env``, a :class:`DenoisingEnv` with ``num_envs=1``.

        Args:
            env: the torch-native environment of one trajectory.
            prompts: the prompts a reset without ``options["prompt"]`` draws from.
        """
        if env.num_envs != 1:
            raise ValueError(f"DenoisingEpisodeEnv wraps a DenoisingEnv with num_envs=1, got {env.num_envs}")
        if not prompts:
            raise ValueError("DenoisingEpisodeEnv needs at least one prompt to draw resets from")
        self.vector_env = env
        self.prompt_pool = tuple(prompts)
        self.observation_space = env.single_observation_space
        self.action_space = env.single_action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start one trajectory; ``options`` may hold ``prompt`` (a string) and ``noise`` (x_T [*S]).

        Returns:
            (observation, {"prompt": the prompt}).
        """
        super().reset(seed=seed)
        options = options or {}
        prompt = options.get("prompt")
        if prompt is None:
            prompt = self.prompt_pool[int(self.np_random.integers(0, len(self.prompt_pool)))]
        inner: dict[str, Any] = {"prompts": [str(prompt)]}
        if options.get("noise") is not None:
            inner["noise"] = torch.as_tensor(np.asarray(options["noise"], dtype=np.float32))[None]
        noise_seed = seed if seed is not None else _draw_seed(self.np_random)
        obs, _ = self.vector_env.reset(seed=noise_seed, options=inner)
        return self._unbatch_obs(obs), {"prompt": str(prompt)}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        """Move the trajectory to the latent ``action`` [*S].

        Returns:
            (observation, reward, terminated, truncated, info).
        """
        batch = _action_tensor(action, tuple(self.action_space.shape))[None]  # [1, *S]
        obs, reward, terminated, truncated, info = self.vector_env.step(batch)
        return (
            self._unbatch_obs(obs),
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            _unbatch_info(info),
        )

    @staticmethod
    def _unbatch_obs(obs: dict) -> dict:
        return {
            "latent": to_numpy(obs["latent"][0]),
            "step": np.int64(obs["step"][0].item()),
            "sigma": to_numpy(obs["sigma"][0]).astype(np.float32),
        }


def _unbatch_info(info: dict) -> dict:
    """Row 0 of every per-trajectory entry of a batch-1 ``info`` (as numpy); batch totals stay as they are."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == 1:
            out[key] = to_numpy(value[0])
        else:
            out[key] = to_numpy(value)
    return out


__all__ = ["DenoisingEpisodeEnv", "NumpyDenoisingEnv", "to_numpy", "vector_info"]
