"""The GRPO learner: one iteration reads collect -> score -> assign credit -> update -> log.

GRPO for flow models as in Flow-GRPO (Liu et al. 2025, arXiv 2505.05470), with the credit-assignment step
swappable for any algorithm of :mod:`creditzoo.algorithms` (e.g. TP-GRPO, Tong et al. 2026,
arXiv 2602.06422). Advantages, loss and defaults: docs/math.md sections 4-6. The policy is the base model plus
a peft LoRA adapter (set up in :mod:`creditzoo.learner.lora`); the reference model is the same network with the
adapter disabled. The update's pieces (minibatch plan, statistics) are in :mod:`creditzoo.learner.update`, the loss
of one step in :mod:`creditzoo.learner.loss`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from creditzoo.algorithms import option_names
from creditzoo.envs import DenoisingConfig, DenoisingEnv
from creditzoo.learner.config import TrainConfig
from creditzoo.learner.distributed import Processes
from creditzoo.learner.lora import adapter_state, add_lora, compute_lora_merged, load_adapter_state
from creditzoo.learner.loss import step_loss
from creditzoo.learner.update import Minibatch, StepSums, UpdateStatistics, kept_rows, minibatch_plan
from creditzoo.models.base import FlowModel, select_conditioning
from creditzoo.rewards.noise import pooled_noise_sd
from creditzoo.rollout import Credit, Rollout
from creditzoo.sampling import noise_step_weights, sde_step, train_step_mask, window_step_stds
from creditzoo.shapes import DEFAULT_SHAPE, CollectedRollout, EpisodeOptions, get_shape

STREAMS = {"prompts": 0, "rollout": 1, "reward": 2, "minibatch": 3}


class NonFiniteRewardError(RuntimeError):
    """A reward came back NaN or infinite; the run must stop."""


def derive_seed(seed: int, iteration: int, stream: str) -> int:
    """A seed for one random stream of one iteration, independent of everything that ran before it."""
    return (int(seed) * 1_000_003 + int(iteration)) * 8 + STREAMS[stream]


CPU_MAX_BATCH = 128
"""Lockstep chunk on a CPU: per-sample cost of the toy model rises past ~128-256 (benchmarks/iteration_cost.py)."""


def resolve_max_batch(max_batch: int | None, device: torch.device) -> int | None:
    """The lockstep chunk size: as configured (0: never split), else 128 on a CPU and unsplit on a GPU.

    The GPU default is not measured yet (no GPU was available when it was set): lower ``--max-batch`` if the
    completions of a large batch run out of memory.
    """
    if max_batch is not None:
        return max_batch or None
    return CPU_MAX_BATCH if torch.device(device).type == "cpu" else None


@dataclass(frozen=True)
class IterationResult:
    """What one iteration produced: its metrics line and the compact record of its rollouts."""

    metrics: dict
    record: dict[str, torch.Tensor]
    prompts: list[str]
    shape: str = DEFAULT_SHAPE


class GRPOLearner:
    """Owns the policy, the optimizer and the environment; :meth:`iteration` runs one GRPO iteration."""

    def __init__(
        self,
        config: TrainConfig,
        model: FlowModel,
        reward: object,
        train_prompts: list[str],
        device: torch.device,
        processes: Processes | None = None,
    ) -> None:
        """Set up LoRA, the algorithm, the environment and AdamW.

        Args:
            config: the run's configuration.
            model: the base model (frozen; the adapter is added here).
            reward: training reward callable (optionally a noisy wrapper with ``score``/``manual_seed``).
            train_prompts: prompts groups are drawn from.
            device: where the model runs.
            processes: this process's place among N training processes (None: a single process). Each process
                samples ``prompts_per_iteration / N`` whole groups; credit and the update are global.

        Raises:
            ValueError: bad input, e.g. ``prompts_per_iteration`` not a multiple of N (one line).
        """
        self.processes = processes or Processes()
        self.processes.check_split(config.prompts_per_iteration)
        if len(train_prompts) < config.prompts_per_iteration:
            raise ValueError(
                f"prompts_per_iteration={config.prompts_per_iteration} exceeds the {len(train_prompts)} train prompts"
            )
        self.config = config
        self.train_prompts = list(train_prompts)
        self.reward = reward
        self.algorithm = config.algorithm  # resolved once, when the configuration was checked
        self.shape = get_shape(self.algorithm.rollout_shape)  # collects, and converts what it collected
        self.shape_options = self._shape_options()
        # the sigma-grid shift in use: the configured one, else the model's (SD3.5's scheduler: 3), else 1
        self.shift = config.shift if config.shift is not None else float(model.default_shift)
        self.policy = add_lora(model, seed=config.seed, rank=config.lora_rank, alpha=config.lora_alpha).to(device)
        if config.lora_compute == "merged":
            compute_lora_merged(self.policy)
        if config.gradient_checkpointing:
            model.enable_gradient_checkpointing()  # a model without it refuses in one line
        self.policy.eval()  # no dropout anywhere: sampling and training see the same function
        env_config = DenoisingConfig(
            num_steps=config.num_steps,
            shift=self.shift,
            guidance_scale=config.guidance_scale,
            window_start=config.window_start,
            window_size=config.resolved_window_size,
            completion=config.completion if self.algorithm.needs_completions else None,
            max_batch=resolve_max_batch(config.max_batch, device),
            decode_batch=config.decode_batch,
        )
        local_batch = config.batch_size // self.processes.world_size  # this process's whole groups
        self.env = DenoisingEnv(self.policy, reward, num_envs=local_batch, config=env_config)
        self.parameters = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.parameters, lr=config.learning_rate, weight_decay=config.weight_decay)

    # ----------------------------------------------------------------------------------------- the loop

    def iteration(self, iteration: int) -> IterationResult:
        """Run GRPO iteration ``iteration`` (1-based); deterministic given the state and the seed.

        With N processes each samples its block of whole groups; the rewards are gathered, so credit, metrics
        and the record are those of the global batch, and the update equals one process's on the global batch.
        """
        started = time.perf_counter()
        prompts, group_ids = self.draw_prompts(iteration)  # the global batch
        rows = self.processes.shard.rows(len(prompts) // self.processes.world_size)
        local = self.collect(prompts[rows], group_ids[rows], iteration)  # this process's groups
        rollout = self.gather(local, prompts, group_ids, iteration)  # global rewards and log-probs
        noise = self.noise_estimate(rollout)  # the reward noise pooled from repeats, and what the credit is given
        credit = self.assign_credit(rollout, iteration, noise.get("credit_noise_sd"))
        update = self.update(local, credit, iteration, group_ids)
        metrics = self.log(iteration, rollout, credit, {**update, **noise}, time.perf_counter() - started)
        record = self.record(rollout, credit, iteration, noise)
        return IterationResult(metrics=metrics, record=record, prompts=rollout.prompts, shape=rollout.shape)

    def draw_prompts(self, iteration: int) -> tuple[list[str], torch.Tensor]:
        """Draw P distinct train prompts, each repeated G times; group ids 0 .. P-1."""
        rng = np.random.default_rng(derive_seed(self.config.seed, iteration, "prompts"))
        chosen = rng.choice(len(self.train_prompts), size=self.config.prompts_per_iteration, replace=False)
        group = self.config.group_size
        prompts = [self.train_prompts[i] for i in chosen for _ in range(group)]
        group_ids = torch.arange(len(chosen)).repeat_interleave(group)  # [B]
        return prompts, group_ids

    def collect(self, prompts: list[str], group_ids: torch.Tensor, iteration: int) -> CollectedRollout:
        """Sample this process's rows of the batch (and their completions); check every reward is finite.

        With several processes the check runs in :meth:`gather`, on the global batch, so that every process
        stops together.
        """
        processes = self.processes
        if hasattr(self.reward, "manual_seed"):  # one reward-noise stream per (seed, iteration, process)
            seed = derive_seed(self.config.seed, iteration, "reward")
            self.reward.manual_seed(seed * processes.world_size + processes.rank)
        options = EpisodeOptions(
            seed=derive_seed(self.config.seed, iteration, "rollout"),
            sde_kind=self.config.sde_kind,
            noise_level=self.config.resolved_noise_level,
            cps_log_prob=self.config.resolved_cps_log_prob,
            window_start=self.window_start(iteration),
            shard=processes.shard,
            shape_options=self.shape_options,
        )
        rollout = self.shape.collect(self.env, prompts, group_ids, options)
        if processes.world_size == 1:
            self.check_finite(rollout, iteration)
        return rollout

    def check_finite(self, rollout: CollectedRollout, iteration: int) -> None:
        """Raise :class:`NonFiniteRewardError` naming the first prompt whose reward is NaN or infinite."""
        names = ("completion_rewards", "branch_rewards", "final_rewards")
        for name in (*names, *(f"{name}_clean" for name in names)):
            values = getattr(rollout, name)
            if values is None:
                continue
            bad = ~torch.isfinite(values.reshape(values.shape[0], -1)).all(dim=1)
            if bool(bad.any()):
                index = int(bad.nonzero()[0])
                raise NonFiniteRewardError(
                    f"non-finite reward ({name}) for prompt {rollout.prompts[index]!r} at iteration {iteration}"
                )

    def gather(
        self, rollout: CollectedRollout, prompts: list[str], group_ids: torch.Tensor, iteration: int
    ) -> CollectedRollout:
        """The global batch's rewards, log-probs and counters, gathered from every process in rank order.

        With one process this is ``rollout`` itself. Otherwise the result holds the global ``prompts`` and
        ``group_ids`` [B], every reward tensor and ``log_probs`` concatenated over the processes, the counters
        summed and the phase times maximised (the slowest process); the latents (``inputs``, ``outputs``,
        ``states``) and ``images`` stay with the process that sampled them and are None here. Every reward is
        checked finite on every process, so all stop together.

        Args:
            rollout: this process's rows.
            prompts: the global batch's B prompts.
            group_ids: int64 [B], the global batch's group ids.
            iteration: the iteration (for the error message).
        """
        processes = self.processes
        if processes.world_size == 1:
            return rollout

        def cat(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else processes.gather(tensor)

        info = rollout.info
        counters = ("model_evals", "completion_evals", "reward_calls")
        totals = processes.sum(torch.tensor([float(info[name]) for name in counters], dtype=torch.float64))
        phases = sorted(info["seconds"])
        slowest = processes.max(torch.tensor([float(info["seconds"][name]) for name in phases], dtype=torch.float64))
        merged = dataclasses.replace(
            rollout,
            prompts=list(prompts),
            group_ids=group_ids,
            inputs=None,
            outputs=None,
            states=None,
            images=None,
            log_probs=cat(rollout.log_probs),
            final_rewards=cat(rollout.final_rewards),
            final_rewards_clean=cat(rollout.final_rewards_clean),
            completion_rewards=cat(rollout.completion_rewards),
            completion_rewards_clean=cat(rollout.completion_rewards_clean),
            branch_rewards=cat(rollout.branch_rewards),
            branch_rewards_clean=cat(rollout.branch_rewards_clean),
            final_rewards_var=cat(rollout.final_rewards_var),
            completion_rewards_var=cat(rollout.completion_rewards_var),
            branch_rewards_var=cat(rollout.branch_rewards_var),
            info={
                **{name: int(total) for name, total in zip(counters, totals.tolist(), strict=True)},
                "seconds": dict(zip(phases, slowest.tolist(), strict=True)),
            },
        )
        self.check_finite(merged, iteration)
        return merged

    def _shape_options(self) -> dict:
        """What the collector of the algorithm's rollout shape needs: tree split steps and noise, G2RPO granularities.

        Raises:
            ValueError: a split set outside the window, or a group size other than 2^|S| (one line, valid range).
        """
        config = self.config
        return self.shape.episode_options(
            self.algorithm.bound_options, window_size=config.resolved_window_size, group_size=config.group_size
        )

    def window_start(self, iteration: int) -> int:
        """The SDE window's first step at ``iteration``: moved by the sliding schedule, else the configured one."""
        schedule = self.config.schedule
        return schedule.start(iteration) if schedule is not None else self.config.window_start

    def step_weights(self) -> torch.Tensor | None:
        """Noise-aware weights [K] of the current window (``step_weight="noise"``), or None for ones."""
        if self.config.resolved_step_weight == "none":
            return None
        window = self.env.window
        stds = window_step_stds(
            self.env.sigmas,
            window.start,
            window.size,
            noise_level=self.config.resolved_noise_level,
            kind=self.config.sde_kind,
        )
        return noise_step_weights(stds)  # [K]

    def train_mask(self, batch: int, iteration: int) -> torch.Tensor | None:
        """Bool [B, K] of the window steps each sample trains (``train_steps="random:F"``), or None for all."""
        fraction = self.config.train_fraction
        if fraction is None:
            return None
        samples = torch.arange(batch)
        return train_step_mask(
            fraction, self.env.window.size, seed=self.config.seed, iteration=iteration, samples=samples
        )

    def loss_weights(self, credit: Credit) -> torch.Tensor | None:
        """Per-(row, step) policy-loss weights [B, K]: the credit's weights times the step weights (None: ones)."""
        steps = self.step_weights()
        if credit.weights is None and steps is None:
            return None
        weights = torch.ones_like(credit.advantages, dtype=torch.float32)
        if credit.weights is not None:
            weights = weights * credit.weights.float()
        if steps is not None:
            weights = weights * steps.unsqueeze(0)
        return weights

    def noise_estimate(self, rollout: CollectedRollout) -> dict[str, float]:
        """The iteration's reward-noise figures (docs/math.md section 10.1), as metrics.

        ``reward_noise_sd_pooled``: with reward repeats N >= 2, the per-call SD pooled over every image of the
        batch, sqrt(mean of the per-image sample variances), each image counted once as it was scored (the
        shape's :meth:`~creditzoo.shapes.base.RolloutShape.scored_variances`: a chain's final image once, as R_K;
        an anchor's completions and its group's anchor image once; a tree's leaves).
        ``credit_noise_sd``: for a noise-aware algorithm, what it is given: the per-call SD (pooled for
        ``reward_noise_sd="auto"``, else declared) divided by sqrt(N), the SD of a mean of N calls.
        """
        variances = get_shape(rollout.shape).scored_variances(rollout)  # every scored image once, or None
        figures = {} if variances is None else {"reward_noise_sd_pooled": pooled_noise_sd(variances)}
        if "noise_sd" in option_names(self.algorithm.fn):
            declared = self.config.reward_noise_sd
            if declared == 0:  # none declared: the algorithm's own (algo_options' noise_sd, else its default 0)
                figures["credit_noise_sd"] = float(self.algorithm.bound_options["noise_sd"])
            else:
                per_call = figures["reward_noise_sd_pooled"] if declared == "auto" else float(declared)
                figures["credit_noise_sd"] = per_call / math.sqrt(self.config.reward_repeats)
        return figures

    def assign_credit(
        self, rollout: CollectedRollout, iteration: int | None = None, noise_sd: float | None = None
    ) -> Credit:
        """Per-step rewards, turning points and advantages [B, K] (and edge weights) from the chosen algorithm.

        The algorithm reads the Rollout the rollout's shape builds of it (:meth:`RolloutShape.rollout_fields
        <creditzoo.shapes.base.RolloutShape.rollout_fields>`).

        Args:
            rollout: the iteration's (global) rollout.
            iteration: 1-based; reaches the algorithm as ``Rollout.iteration``, for credit that follows a schedule
                (``branch_grpo``'s sliding depth pruning).
            noise_sd: the noise SD a noise-aware algorithm is given this iteration (``credit_noise_sd`` of
                :meth:`noise_estimate`); None leaves its bound options as they are.
        """
        fields = get_shape(rollout.shape).rollout_fields(rollout, num_steps=self.env.window.size)  # the shape's Rollout
        algorithm = self.algorithm
        if noise_sd is not None:
            algorithm = dataclasses.replace(algorithm, options={**algorithm.options, "noise_sd": noise_sd})
        return algorithm(Rollout(**fields, iteration=iteration))

    def update(
        self, rollout: CollectedRollout, credit: Credit, iteration: int, group_ids: torch.Tensor | None = None
    ) -> dict:
        """Clipped-surrogate (+ KL) updates over minibatches, gradients accumulated over window steps.

        Per window step k the minibatch loss is mean_b(weights[b, k] * surrogate[b, k]) + beta * KL_k, with
        weights = the credit's weights (tree edges: 1/m) times the noise-aware step weights; the KL term is not
        weighted. With a random step subset, only the trained (row, step) pairs are evaluated (the others add
        no loss and cost no forward pass), and each sample's loss is averaged over its trained steps.

        With N processes the minibatches partition the global batch exactly as with one process; each process
        evaluates the rows of each minibatch it sampled, divides by the global minibatch size, and the LoRA
        gradients are summed over the processes before clipping and the AdamW step, so every process takes
        the step one process would take on the global batch. The returned statistics are global.

        The pieces (``creditzoo/learner/update.py``): ``minibatch_plan`` says which rows each minibatch and step
        train; :meth:`accumulate_gradients` runs the forward passes and ``step_loss`` of each step and backpropagates;
        ``UpdateStatistics`` gathers what is logged.

        Args:
            rollout: this process's rows (their latents and sampling log-probs), block ``processes.rank``.
            credit: the global batch's credit, advantages [B, K].
            iteration: the iteration (seeds the minibatch shuffle and the random step subset).
            group_ids: int64 [B], the global batch's group ids (None: ``rollout.group_ids``, one process).
        """
        config, window, processes = self.config, self.env.window, self.processes
        started = time.perf_counter()
        group_ids = rollout.group_ids if group_ids is None else group_ids  # [B] global
        advantages = credit.advantages.clamp(-config.adv_clip, config.adv_clip)  # [B, K]
        weights = self.loss_weights(credit)  # [B, K] or None
        plan = minibatch_plan(
            kept_rows(advantages, group_ids),
            epochs=config.inner_epochs,
            minibatches=config.updates_per_iteration,
            seed=derive_seed(config.seed, iteration, "minibatch"),
            num_steps=window.size,
            mask=self.train_mask(group_ids.numel(), iteration),  # [B, K] or None
            local=processes.shard.rows(rollout.group_ids.numel()),  # the global rows this process holds
        )
        statistics = UpdateStatistics(with_kl=config.beta > 0)
        for minibatch in plan.minibatches:
            self.optimizer.zero_grad(set_to_none=True)
            sums = self.accumulate_gradients(rollout, minibatch, advantages, weights, plan.steps_per_sample)
            processes.sum_gradients(self.parameters)
            sums.reduce(processes)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, config.max_grad_norm)
            self.optimizer.step()
            statistics.add(minibatch, sums, grad_norm)
        metrics = statistics.summary(plan, group_ids.numel(), window.start, window.size)
        metrics["train_evals"] = int(processes.sum(torch.tensor(metrics["train_evals"], dtype=torch.float64)))
        metrics["seconds"] = time.perf_counter() - started
        return metrics

    def accumulate_gradients(
        self,
        rollout: CollectedRollout,
        minibatch: Minibatch,
        advantages: torch.Tensor,
        weights: torch.Tensor | None,
        steps_per_sample: int,
    ) -> StepSums:
        """Backpropagate one minibatch's loss on this process's rows, window step by window step.

        Each step's :func:`~creditzoo.learner.loss.step_loss` is divided by ``steps_per_sample`` before its
        backward pass, so the gradients add up to the gradient of the minibatch's loss (this process's share).

        Args:
            rollout: this process's rows (block ``processes.rank`` of the global batch).
            minibatch: the minibatch (global rows; ``minibatch.local`` are the ones sampled here).
            advantages: [B, K] clipped advantages of the global batch.
            weights: [B, K] loss weights of the global batch, or None for ones.
            steps_per_sample: the window steps each sample trains.

        Returns:
            The minibatch's :class:`~creditzoo.learner.update.StepSums` on this process (not yet reduced).
        """
        config, window, policy = self.config, self.env.window, self.policy
        start = self.processes.shard.rows(rollout.group_ids.numel()).start  # global row of this process's row 0
        device = rollout.inputs.device
        evals_per_forward = 2 if config.guidance_scale != 1.0 else 1
        sums = StepSums.zeros(window.size)
        for k in range(window.size):
            sums.count(k, minibatch.trained[k].numel())
            rows = minibatch.local[k]  # global rows sampled here
            if rows.numel() == 0:
                continue
            here = rows - start  # the same rows, indexed in this process's rollout
            j = window.start + k
            cond = select_conditioning(self.env.cond, here.to(device))
            z, z_next = rollout.inputs[here, k], rollout.outputs[here, k]  # z_k -> z_{k+1}, o_j -> c_{k,i}...
            sigma = self.env.sigmas[j].expand(rows.numel())
            step = self._policy_step(policy, z, z_next, sigma, cond, j)
            sums.evals += 3 * evals_per_forward * rows.numel()
            reference = None
            if config.beta > 0:
                with torch.no_grad(), policy.disable_adapter():
                    reference = self._policy_step(policy, z, z_next, sigma, cond, j)
                sums.evals += evals_per_forward * rows.numel()
            loss = step_loss(
                step,
                rollout.log_probs[here, k],
                advantages[rows, k].to(device),
                clip_range=config.resolved_clip_range,
                minibatch_size=minibatch.size,
                weights=None if weights is None else weights[rows, k].to(device),
                reference=reference,
                beta=config.beta,
            )
            (loss.loss / steps_per_sample).backward()
            sums.add(k, rows.numel(), loss)
        return sums

    def _policy_step(
        self, policy: torch.nn.Module, z: torch.Tensor, z_next: torch.Tensor, sigma: torch.Tensor, cond: dict, j: int
    ):
        velocity = policy.velocity(z, sigma, cond, guidance_scale=self.config.guidance_scale)
        return sde_step(
            velocity,
            z,
            sigma,
            self.env.sigmas[j + 1].expand(z.shape[0]),
            noise_level=self.config.resolved_noise_level,
            kind=self.config.sde_kind,
            prev_sample=z_next,
            cps_log_prob=self.config.resolved_cps_log_prob,
        )

    # ------------------------------------------------------------------------------------------- logging

    def log(self, iteration: int, rollout: CollectedRollout, credit: Credit, update: dict, seconds: float) -> dict:
        """One metrics line: rewards, credit statistics, update statistics, work and wall time per phase."""
        info = rollout.info
        phases = {name: round(value, 4) for name, value in info["seconds"].items()}
        phases["update"] = round(update.pop("seconds"), 4)
        phases["total"] = round(seconds, 4)
        advantages = credit.advantages
        metrics = {
            "iteration": iteration,
            "reward_mean": float(rollout.final_rewards.mean()),
            "reward_std": float(rollout.final_rewards.std(correction=0)),
            "reward_clean_mean": float(rollout.final_rewards_clean.mean()),
            "reward_clean_std": float(rollout.final_rewards_clean.std(correction=0)),
            "adv_abs_mean_per_step": [round(float(x), 5) for x in advantages.abs().mean(0)],
            "adv_std_per_step": [round(float(x), 5) for x in advantages.std(0, correction=0)],
            "tp_rate": float(credit.turning_points.float().mean()),
            "tp_rate_per_step": [round(float(x), 5) for x in credit.turning_points.float().mean(0)],
            "zero_increment_rate": self._zero_increment_rate(rollout),
            **update,
            "model_evals": info["model_evals"] + info["completion_evals"] + update["train_evals"],
            "sampling_evals": info["model_evals"],
            "completion_evals": info["completion_evals"],
            "reward_calls": info["reward_calls"],
            "seconds": phases,
        }
        return metrics

    @staticmethod
    def _zero_increment_rate(rollout: CollectedRollout) -> float | None:
        if rollout.completion_rewards is None:
            return None
        increments = rollout.completion_rewards[:, 1:] - rollout.completion_rewards[:, :-1]
        return float((increments == 0).float().mean())

    def record(
        self, rollout: CollectedRollout, credit: Credit, iteration: int, noise: dict[str, float] | None = None
    ) -> dict[str, torch.Tensor]:
        """The compact per-iteration record analysis needs to recompute any algorithm offline.

        Besides rewards and credit it holds what shaped the loss, when present: ``window_start`` [1] (a sliding
        window's position), ``weights`` [B, K] (the credit's weights times the step weights), ``step_weights``
        [K] (noise-aware) and ``train_mask`` bool [B, K] (random step subset); with reward repeats the per-image
        sample variances ``final_rewards_var`` [B], ``completion_rewards_var`` [B, K+1] (chains with completions)
        and ``branch_rewards_var`` [B, K, L] (anchor), and for a noise-aware algorithm the noise SD it was given,
        ``credit_noise_sd`` [1] (from ``noise``, the figures of :meth:`noise_estimate`).
        """
        record = {
            "group_ids": rollout.group_ids,
            "final_rewards": rollout.final_rewards,
            "final_rewards_clean": rollout.final_rewards_clean,
            "step_rewards": credit.step_rewards,
            "turning_points": credit.turning_points,
            "advantages": credit.advantages,
            "log_probs": rollout.log_probs,
        }
        if rollout.completion_rewards is not None:
            record["completion_rewards"] = rollout.completion_rewards
            record["completion_rewards_clean"] = rollout.completion_rewards_clean
        if rollout.branch_rewards is not None:
            record["branch_rewards"] = rollout.branch_rewards  # [B, K, L]
            record["branch_rewards_clean"] = rollout.branch_rewards_clean
        for name in ("completion_rewards_var", "final_rewards_var", "branch_rewards_var"):
            if getattr(rollout, name) is not None:
                record[name] = getattr(rollout, name)
        if noise and "credit_noise_sd" in noise:
            record["credit_noise_sd"] = torch.tensor([noise["credit_noise_sd"]], dtype=torch.float64)
        if rollout.split_steps is not None:
            record["split_steps"] = torch.tensor(rollout.split_steps, dtype=torch.int64)  # [|S|]
        if self.config.window_schedule is not None:
            record["window_start"] = torch.tensor([self.env.window.start])
        weights, steps = self.loss_weights(credit), self.step_weights()
        if weights is not None:
            record["weights"] = weights
        if steps is not None:
            record["step_weights"] = steps
        mask = self.train_mask(rollout.group_ids.numel(), iteration)
        if mask is not None:
            record["train_mask"] = mask
        return {name: value.detach().cpu().contiguous() for name, value in record.items()}

    # ----------------------------------------------------------------------------------------- state

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The LoRA weights (peft's naming; :func:`creditzoo.learner.lora.adapter_state`)."""
        return adapter_state(self.policy)

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load LoRA weights saved by :meth:`adapter_state` (or peft's ``save_pretrained``).

        Raises:
            ValueError: ``state`` has keys the adapter does not have (one line).
        """
        load_adapter_state(self.policy, state)
