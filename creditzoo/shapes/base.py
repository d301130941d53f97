"""What a rollout shape is: the interface every shape implements, the record it collects, and their helpers.

A rollout *shape* says what a row of a batch is (docs/math.md sections 2, 9.3 and 9.4): one trajectory (chain),
the children of one ODE anchor (anchor), or one leaf of a binary tree (tree). Everything that depends on the
shape is a method of its :class:`RolloutShape`, one module per shape (``chain.py``, ``anchor.py``, ``tree.py``):
the options it takes and their validation, the collection of an episode through the environment, the
:class:`~creditzoo.rollout.Rollout` its algorithms read (from a collected rollout, from a stored record, or a
small example for probing an algorithm), and the check of a Rollout's fields.

Every shape collects the same record, :class:`CollectedRollout`: B rows of K (input, output) transitions with the
log-probability of each output recorded while sampling, so one update trains them all.

This module imports torch and nothing heavy (``creditzoo.rollout`` reads it); the collectors import the
environment only when they run. Methods that build a Rollout return its keywords (``Rollout(**fields)``): the
Rollout checks itself through the shapes, so the shapes cannot import it back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from creditzoo.sampling import sde_step

if TYPE_CHECKING:
    from creditzoo.envs.denoising import DenoisingEnv
    from creditzoo.envs.shard import Shard
    from creditzoo.rollout import Rollout

RolloutFields = dict[str, Any]
"""Keywords of :class:`creditzoo.rollout.Rollout`: ``Rollout(**fields)`` builds it."""


@dataclass(frozen=True)
class EpisodeOptions:
    """How one episode is sampled, whatever its shape.

    Attributes:
        seed: seeds every noise draw of the episode.
        sde_kind: "flow_grpo" or "cps".
        noise_level: SDE noise level a.
        cps_log_prob: what a CPS step's log-prob is: "released" (default) or "gaussian" (docs/math.md section 1).
        window_start: the SDE window's first step for this episode (None: the environment's configured one).
        shard: this process's block of the global batch (None: one process). Noise is drawn for the global batch
            and sliced, so a sample's noise does not depend on the number of processes.
        shape_options: what the shape's collector takes beyond these (its ``option_names``, e.g. a tree's
            ``split_steps``, G2RPO's ``granularities``), as :meth:`RolloutShape.episode_options` resolves them.
    """

    seed: int
    sde_kind: str
    noise_level: float
    cps_log_prob: str = "released"
    window_start: int | None = None
    shard: Shard | None = None
    shape_options: Mapping[str, Any] = field(default_factory=dict)

    def sampler_options(self) -> dict:
        """The keywords every sampler takes: seed, SDE kind, level and log-prob, window start and shard."""
        names = ("seed", "sde_kind", "noise_level", "cps_log_prob", "window_start", "shard")
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class CollectedRollout:
    """One episode's rows of (input, output) transitions and their rewards: what every shape's collector returns.

    Attributes:
        prompts: B prompts.
        group_ids: int64 [B].
        inputs: [B, K, *S] latent each trained transition starts from (chain: z_k; anchor: o_{w+k}; tree: the
            parent node on the leaf's path).
        outputs: [B, K, *S] latent it ends at (chain: z_{k+1}; anchor: c_{k,i}; tree: the child node).
        log_probs: float32 [B, K] log-probabilities of each output given its input, recorded while sampling.
        final_rewards: float32 [B] (noisy) terminal rewards (tree: the leaf's; anchor: the reward of the group's ODE
            anchor image, the same for every row of a group); ``*_clean`` without reward noise.
        images: [B, 3, H, W] final images (anchor: the group's anchor image).
        info: the episode's counters ``model_evals``, ``completion_evals``, ``reward_calls`` and ``seconds`` per
            phase (:class:`~creditzoo.envs.lockstep.Counters`).
        shape: the rollout shape's name (a key of :data:`creditzoo.shapes.SHAPES`).
        completion_rewards: float32 [B, K + 1] R_0 .. R_K (chains with completions), else None;
            ``completion_rewards_clean`` likewise.
        states: [B, K + 1, *S] window states z_0 .. z_K (chains), else None.
        branch_rewards: float32 [B, K, L] R_{k,i} per completion variant (anchor), else None; ``*_clean`` likewise.
        split_steps: the tree's split steps (tree), else None.
        final_rewards_var: [B] with reward repeats (docs/math.md section 10.1), the sample variance of the repeated
            scores of each row's final image (tree: the leaf's; anchor: the group's anchor image, the same for
            every row of a group), else None; ``completion_rewards_var`` [B, K + 1] (chains with completions) and
            ``branch_rewards_var`` [B, K, L] (anchor) likewise.

    With several processes, :meth:`GRPOLearner.gather <creditzoo.learner.grpo.GRPOLearner.gather>` builds the
    global batch's view: prompts, group ids, rewards and log-probs of every process, with ``inputs``,
    ``outputs``, ``states`` and ``images`` set to None (the latents stay with the process that sampled them).
    """

    prompts: list[str]
    group_ids: torch.Tensor
    inputs: torch.Tensor
    outputs: torch.Tensor
    log_probs: torch.Tensor
    final_rewards: torch.Tensor
    final_rewards_clean: torch.Tensor
    images: torch.Tensor
    info: dict
    shape: str
    completion_rewards: torch.Tensor | None = None
    completion_rewards_clean: torch.Tensor | None = None
    states: torch.Tensor | None = None
    branch_rewards: torch.Tensor | None = None
    branch_rewards_clean: torch.Tensor | None = None
    split_steps: tuple[int, ...] | None = None
    final_rewards_var: torch.Tensor | None = None
    completion_rewards_var: torch.Tensor | None = None
    branch_rewards_var: torch.Tensor | None = None


class RolloutShape(ABC):
    """One rollout shape: everything the package does differently for it, registered once in ``SHAPES``.

    Attributes:
        name: its key in :data:`creditzoo.shapes.SHAPES` and in ``AlgorithmSpec.shape``.
        description: one line: what a row is.
        option_names: the ``EpisodeOptions.shape_options`` its collector takes.
        fields: the :class:`~creditzoo.rollout.Rollout` fields that belong to this shape only.
        score_name: the recorded rewards credit is computed from (a record's tensor name, without ``_clean``).
        scores_along_path: whether a row's scores are rewards along one path (R_0 .. R_K), so that their
            differences are the increments d_k.
        sets_group_size: whether the shape fixes the group size (a tree's 2^|S| leaves) instead of the user.
    """

    name: str
    description: str
    option_names: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    score_name: str
    scores_along_path: bool = False
    sets_group_size: bool = False

    def __repr__(self) -> str:
        return f"<rollout shape {self.name!r}>"

    # ------------------------------------------------------------------------------------------ options

    def episode_options(
        self, algorithm_options: Mapping[str, Any], *, window_size: int, group_size: int | None = None
    ) -> dict[str, Any]:
        """The collector's options (``EpisodeOptions.shape_options``) from an algorithm's options, validated.

        Args:
            algorithm_options: the algorithm's options (bound, or as the user gave them).
            window_size: K.
            group_size: G, checked where the shape fixes it (None: not checked).

        Raises:
            ValueError: an option outside its valid range (one line naming the range).
        """
        return {}

    def group_size(self, algorithm_options: Mapping[str, Any], *, window_size: int) -> int | None:
        """The group size the shape fixes for these options (a tree's 2^|S|), or None where the user chooses it."""
        return None

    @abstractmethod
    def latents_per_row(self, window_size: int, *, completions: bool) -> int:
        """Latents [*S] a collected row holds at least (for the memory estimate), for a window of K steps."""

    def check_episode_options(self, options: EpisodeOptions) -> None:
        """Raise ValueError when ``options`` carries a shape option this shape does not take."""
        unknown = sorted(set(options.shape_options) - set(self.option_names))
        if unknown:
            valid = ", ".join(self.option_names) or "none"
            raise ValueError(f"{self.name} rollouts take no option {', '.join(unknown)}; valid: {valid}")

    # ------------------------------------------------------------------------------------------ collection

    def collect(
        self, env: DenoisingEnv, prompts: list[str], group_ids: torch.Tensor, options: EpisodeOptions
    ) -> CollectedRollout:
        """Sample one episode of this shape through ``env`` after checking ``options``.

        Args:
            env: the denoising environment (its model is the current policy).
            prompts: B prompts (groups repeated).
            group_ids: int64 [B].
            options: how to sample it; ``shape_options`` must be this shape's.

        Returns:
            The episode's :class:`CollectedRollout`.

        Raises:
            ValueError: options that do not fit the shape, or a batch that does not (one line each).
        """
        self.check_episode_options(options)
        return self.sample(env, prompts, group_ids, options)

    @abstractmethod
    def sample(
        self, env: DenoisingEnv, prompts: list[str], group_ids: torch.Tensor, options: EpisodeOptions
    ) -> CollectedRollout:
        """The shape's sampler (call :meth:`collect`, which checks the options first)."""

    def scored_variances(self, collected: CollectedRollout) -> torch.Tensor | None:
        """The per-image sample variances of a (gathered) rollout, every scored image exactly once (section 10.1).

        This default suits shapes whose row holds one final image of its own: ``completion_rewards_var``
        [B, K + 1] where it was kept (its last column is the final image's, R_K), else ``final_rewards_var`` [B].

        Returns:
            The variances, any shape (the learner pools their mean), or None without reward repeats.
        """
        variances = collected.completion_rewards_var  # [B, K + 1] or None
        return collected.final_rewards_var if variances is None else variances

    # ------------------------------------------------------------------------------------------ Rollout

    @abstractmethod
    def check_rollout(self, rollout: Rollout) -> dict[str, Any]:
        """Check a Rollout's fields for this shape (its own fields are known to be the only ones set).

        Returns:
            The fields the Rollout infers from the others (e.g. ``num_steps``), to be set on it.

        Raises:
            ValueError or TypeError: a missing or malformed field, named.
        """

    @abstractmethod
    def rollout_fields(self, collected: CollectedRollout, *, num_steps: int) -> RolloutFields:
        """The Rollout an algorithm reads of a collected rollout (the learner's credit assignment).

        Args:
            collected: the (gathered) rollout.
            num_steps: K, the window size of the episode.
        """

    @abstractmethod
    def record_fields(
        self, tensors: Mapping[str, torch.Tensor], *, clean: bool = False, scores: torch.Tensor | None = None
    ) -> RolloutFields:
        """The Rollout of a stored rollout record (``rollouts/iter_*.safetensors``), for replaying algorithms.

        Args:
            tensors: the record's tensors.
            clean: the rewards without reward noise (default: the noisy ones the run trained on).
            scores: replaces the record's ``score_name`` rewards (same shape), e.g. freshly noised ones.
        """

    @abstractmethod
    def example_fields(self, algorithm_options: Mapping[str, Any]) -> RolloutFields:
        """A small Rollout of this shape that fits ``algorithm_options`` (to probe an algorithm's options)."""


# ---------------------------------------------------------------------------------- helpers for collectors


def check_tensor(name: str, value: torch.Tensor, shape: tuple[int, ...], *, floating: bool) -> None:
    """Raise naming ``name`` unless ``value`` is a tensor of ``shape`` (and, if ``floating``, finite floats).

    Raises:
        TypeError: not a tensor, or not floating point where it must be.
        ValueError: another shape, or NaN / infinite values.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
    if floating:
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} contains NaN or infinite values")


def inferred_steps(rollout: Rollout, what: str) -> int:
    """K of a rollout without a per-step reward tensor: ``num_steps``, else the width of ``log_probs`` [B, K].

    Raises:
        ValueError: neither gives K >= 1 (naming ``what`` needed it).
    """
    steps = rollout.num_steps
    if steps is None and rollout.log_probs is not None and rollout.log_probs.ndim == 2:
        steps = int(rollout.log_probs.shape[1])
    if steps is None or int(steps) < 1:
        raise ValueError(f"with {what}, num_steps=K >= 1 is required, got {steps!r}")
    return steps


def first_rows(group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's group index [B] (groups in increasing id order) and the first row of each group [P], on the CPU.

    Args:
        group_ids: int64 [B], B >= 1.
    """
    _, inverse = torch.unique(group_ids.cpu(), return_inverse=True)  # [B]
    count = int(inverse.max()) + 1
    first = torch.full((count,), inverse.numel(), dtype=torch.int64).scatter_reduce_(
        0, inverse, torch.arange(inverse.numel()), reduce="amin"
    )  # [P]
    return inverse, first


def group_layout(env: DenoisingEnv, prompts: list[str], group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a branched batch; return each row's group index [B] and the first row of each group [P] (its prompt).

    Raises:
        ValueError: no reward to score children with, a batch of another size, or a group with two prompts.
    """
    if env.reward is None:
        raise ValueError("branched rollouts score their children: the environment needs a reward")
    if group_ids.ndim != 1 or group_ids.shape[0] != env.num_envs or len(prompts) != env.num_envs:
        raise ValueError(
            f"need {env.num_envs} prompts and group_ids [B={env.num_envs}], "
            f"got {len(prompts)} prompts and {list(group_ids.shape)}"
        )
    inverse, first = first_rows(group_ids)
    if any(prompts[i] != prompts[int(first[g])] for i, g in enumerate(inverse.tolist())):
        raise ValueError("rows of one group must share a prompt")
    return inverse, first


def reset_episode(env: DenoisingEnv, prompts: list[str], seed: int, window_start: int | None) -> None:
    """Encode the prompts, put the sigma grid on the model's device and place this episode's window."""
    options: dict = {"prompts": prompts}
    if window_start is not None:
        options["window_start"] = window_start
    env.reset(seed=seed, options=options)


def sde_moments(
    env: DenoisingEnv, velocity: torch.Tensor, latents: torch.Tensor, j: int, sde: dict
) -> tuple[torch.Tensor, torch.Tensor]:
    """Section-1 SDE mean [N, *S] and std [N, 1, ..] of a step from grid index j (docs/math.md section 1)."""
    step = sde_step(velocity, latents, env.sigmas[j], env.sigmas[j + 1], prev_sample=latents, **sde)
    return step.mean, step.std
