"""The training configuration: one frozen dataclass, checked once, written to the run directory."""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from creditzoo.algorithms import ALGORITHMS, Algorithm, algorithm_spec, check_pruning, get_algorithm, option_names
from creditzoo.learner.lora import LORA_COMPUTES
from creditzoo.learner.tracking import TRACKERS
from creditzoo.messages import shown
from creditzoo.models import DTYPES
from creditzoo.sampling import (
    CPS_LOG_PROBS,
    SDE_KINDS,
    SlideSchedule,
    parse_step_weight,
    parse_train_steps,
    parse_window_schedule,
    sde_window,
)
from creditzoo.shapes import DEFAULT_SHAPE, RolloutShape, get_shape

if TYPE_CHECKING:
    from creditzoo.rewards.noise import NoiseSpec

DEFAULT_NOISE_LEVEL = {"flow_grpo": 0.7, "cps": 0.8}
OPTION_ALIASES = {"steps": "num_steps", "window": "window_size", "sde": "sde_kind", "lr": "learning_rate"}
"""Command-line spellings (``creditzoo train --lr``, ``sweep --grid lr=...``) of fields whose names differ."""
DEVICE_FORMS = ("auto", "cpu", "cuda", "cuda:N")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
DEFAULT_CLIP_RANGE = {"flow_grpo": 1e-4, "cps": 1e-5}
DEFAULT_CPS_LOG_PROB = "released"
"""The CPS log-prob a run uses unless told: the released code's, for which the CPS clip range 1e-5 is tuned."""
DEFAULT_GROUP_SIZE = 8
"""G of a chain or anchor algorithm when none is given; a tree's is 2^|S|, the leaves of its split set."""
MAX_SEED = 2**32 - 1
"""The largest run seed: per-iteration seeds (``derive_seed``) stay within a torch generator's 64 bits."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a GRPO run needs; the run directory stores it resolved (``config.json``).

    Defaults follow Flow-GRPO / TP-GRPO where they apply (AdamW lr 3e-4, grad-norm clip 1.0, adv clip 5,
    clip range 1e-4 for the Flow-GRPO SDE and 1e-5 for CPS) and are sized for the embedded ``geneval`` task
    on a laptop CPU otherwise.

    Each field is declared once, here: ``creditzoo train`` (and ``creditzoo sweep``) make one option of it
    (:mod:`creditzoo.cli.options`) from its name (or its :data:`OPTION_ALIASES` spelling), its type and its
    metadata: ``help`` (required), ``show_default`` (append the default to the help: only where no task
    overrides it) and ``option`` (False: no command-line option; a table set in the ``--config`` TOML file).
    """

    algo: str = field(
        default="tp_grpo_strict",
        metadata={"help": "credit-assignment algorithm (creditzoo algos)", "show_default": True},
    )
    env: str = field(default="geneval", metadata={"help": "environment / task (creditzoo envs)", "show_default": True})
    model: str | None = field(
        default=None, metadata={"help": "model spec: toy, toy:PATH, sd3:PATH, flux:PATH (default: the task's model)"}
    )
    model_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "backend options, e.g. resolution, guidance, max_sequence_length", "option": False},
    )
    dtype: str = field(
        default="float32", metadata={"help": "model weight dtype: float32, bfloat16, float16", "show_default": True}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute transformer activations in the update (sd3, flux)"}
    )
    max_batch: int | None = field(
        default=None, metadata={"help": "largest batch per model call (default: 128 on CPU, measured; 0: never split)"}
    )
    decode_batch: int = field(default=32, metadata={"help": "latents decoded and scored at once when an episode ends"})
    reward: str | None = field(default=None, metadata={"help": "training reward (default: the task's first)"})
    reward_noise: str | None = field(default=None, metadata={"help": "reward noise spec, e.g. gaussian:0.05"})
    reward_repeats: int = field(
        default=1,
        metadata={
            "help": "score every image (final and completions) N times and keep the mean and the per-image "
            "variance; every call counts in reward_calls",
            "show_default": True,
        },
    )
    reward_noise_sd: float | str = field(
        default=0.0,
        metadata={
            "help": "per-call reward noise SD given to the noise-aware algorithms (tp_margin, tp_prob, *_rts): "
            "auto (pooled from --reward-repeats N >= 2) or a number; 0: none. They get it divided by sqrt(N)",
            "show_default": True,
        },
    )
    prompts: str | None = field(
        default=None, metadata={"help": "prompt files TRAIN,TEST (.txt or GenEval .jsonl) instead of the task's own"}
    )
    iterations: int = field(default=40, metadata={"help": "training iterations"})
    prompts_per_iteration: int = field(default=8, metadata={"help": "distinct prompts (groups) per iteration"})
    group_size: int | None = field(
        default=None,
        metadata={"help": "G, samples per prompt (>= 2; default 8, or 2^|S| leaves for a tree algorithm)"},
    )
    num_steps: int = field(default=10, metadata={"help": "T, denoising steps"})
    shift: float | None = field(
        default=None,
        metadata={"help": "sigma-grid time shift (default: the model's; toy 1, sd3 its scheduler's, 3 for SD3.5)"},
    )
    window_start: int = field(default=0, metadata={"help": "w, first SDE step"})
    window_size: int | None = field(default=None, metadata={"help": "K, SDE steps (default T - 1)"})
    window_schedule: str | None = field(
        default=None,
        metadata={"help": "moving SDE window slide:W:TAU:S (MixGRPO): W steps, moved by S every TAU iterations"},
    )
    train_steps: str | None = field(
        default=None, metadata={"help": "train a random subset of window steps per sample, random:F (DanceGRPO)"}
    )
    step_weight: str | None = field(
        default=None, metadata={"help": "policy-loss step weights: none or noise (TempFlow; default: the algo's)"}
    )
    sde_kind: str = field(default="flow_grpo", metadata={"help": "SDE sampler: flow_grpo or cps"})
    noise_level: float | None = field(default=None, metadata={"help": "SDE noise level a (default 0.7 / 0.8)"})
    cps_log_prob: str | None = field(
        default=None,
        metadata={
            "help": "CPS log-prob for the ratio: released (-mean((x'-mean)^2), the papers' code; default with "
            "--sde cps) or gaussian (exact density; rescale clip_range)"
        },
    )
    completion: str = field(default="ode", metadata={"help": "completion mode: ode, ode:N, x0"})
    guidance_scale: float = field(default=1.0, metadata={"help": "classifier-free guidance (1: none)"})
    beta: float = field(default=0.0, metadata={"help": "KL weight (>= 0)"})
    learning_rate: float = field(default=3e-4, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    lora_rank: int | None = field(
        default=None, metadata={"help": "LoRA rank (default: the model's; toy 16, sd3 32, flux 64)"}
    )
    lora_alpha: float | None = field(
        default=None, metadata={"help": "LoRA alpha (default: the model's with its rank, else the rank)"}
    )
    lora_compute: str = field(
        default="peft",
        metadata={
            "help": "how adapted layers compute: peft (its forward; the default) or merged (one op with W + s*B@A: "
            "faster on CPU, same function with float32 rounding in another order; float32 only)"
        },
    )
    clip_range: float | None = field(default=None, metadata={"help": "PPO ratio clip (default 1e-4 / 1e-5)"})
    adv_clip: float = field(default=5.0, metadata={"help": "advantage clip"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clip"})
    updates_per_iteration: int = field(default=2, metadata={"help": "optimizer updates (minibatches) per epoch"})
    inner_epochs: int = field(default=1, metadata={"help": "passes over each iteration's samples"})
    std_mode: str = field(default="group", metadata={"help": "advantage std: group, global, none"})
    algo_options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "extra algorithm options", "option": False}
    )
    eval_every: int = field(default=10, metadata={"help": "evaluate on the test prompts every N iterations (0: end)"})
    eval_steps: int = field(default=40, metadata={"help": "ODE steps for evaluation"})
    eval_samples_per_prompt: int = field(default=1, metadata={"help": "evaluation samples per test prompt"})
    eval_min_images_per_category: int = field(
        default=32, metadata={"help": "evaluation images per category at least (more samples for small ones)"}
    )
    checkpoint_every: int = field(default=1, metadata={"help": "save a LoRA checkpoint every N iterations"})
    seed: int = field(default=0, metadata={"help": "run seed"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N"})
    log: tuple[str, ...] = field(
        default=(), metadata={"help": "live tracking: tensorboard, wandb (repeat for both; metrics.jsonl stays)"}
    )
    final_eval_steps: int = field(
        default=40,
        metadata={"help": "ODE steps of the final evaluation of the run and of its base model", "show_default": True},
    )
    final_eval_samples: int = field(
        default=4,
        metadata={
            "help": "final evaluation samples per test prompt (per-image scores in eval/final.json)",
            "show_default": True,
        },
    )

    def __post_init__(self) -> None:
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(message)

        for item in dataclasses.fields(self):  # types first: the range checks below compare numbers
            value = getattr(self, item.name)
            checked = field_value(item.name, value)
            if checked is not value:
                object.__setattr__(self, item.name, checked)
        need(self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}")
        need(self.prompts_per_iteration >= 1, f"prompts_per_iteration must be >= 1, got {self.prompts_per_iteration}")
        need(self.num_steps >= 2, f"num_steps must be >= 2, got {self.num_steps}")
        if self.window_schedule is not None:
            schedule = parse_window_schedule(self.window_schedule, self.num_steps)
            need(
                self.window_size in (None, schedule.size) and self.window_start == 0,
                f"window_schedule {self.window_schedule!r} sets the window (W={schedule.size}, start moving from 0); "
                "leave window_size and window_start unset",
            )
        if self.train_steps is not None:
            parse_train_steps(self.train_steps)
        if self.step_weight is not None:
            parse_step_weight(self.step_weight)
        sde_window(self.num_steps, self.resolved_window_size, self.window_start)
        if self.group_size is None:  # not given: the tree's leaves, else the library default (the field's help)
            object.__setattr__(self, "group_size", self.default_group_size)
        need(
            self.group_size >= 2, f"group_size must be >= 2 (GRPO compares samples of a prompt), got {self.group_size}"
        )
        options, size = self.algo_options, self.resolved_window_size
        collected = rollout_shape(self.algo).episode_options(options, window_size=size, group_size=self.group_size)
        if "split_steps" in collected:  # a tree (its split steps checked against K and G = 2^|S|): pruning vs K
            check_pruning(options.get("depth_prune"), options.get("width_prune"), size, collected["split_steps"])
        need(self.sde_kind in SDE_KINDS, f"unknown sde_kind {self.sde_kind!r}; valid: {', '.join(SDE_KINDS)}")
        if self.sde_kind == "cps":
            if self.cps_log_prob is None:  # recorded resolved in config.json, so a run says what it trained with
                object.__setattr__(self, "cps_log_prob", DEFAULT_CPS_LOG_PROB)
            need(
                self.cps_log_prob in CPS_LOG_PROBS,
                f"unknown cps_log_prob {self.cps_log_prob!r}; valid: {', '.join(CPS_LOG_PROBS)}",
            )
            need(
                self.window_start + self.resolved_window_size < self.num_steps,
                "with sde_kind=cps the last step is deterministic (std 0) and cannot be in the window",
            )
        else:
            need(
                self.cps_log_prob is None,
                f"cps_log_prob applies to sde_kind=cps only (sde_kind is {self.sde_kind}); leave it unset",
            )
        need(self.beta >= 0 and math.isfinite(self.beta), f"beta must be >= 0 and finite, got {self.beta}")
        need(0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}, got {self.seed}")
        self._check_reward_noise_sd()
        self._check_finite()
        need(self.learning_rate > 0, f"learning_rate must be a finite number > 0, got {self.learning_rate}")
        need(self.weight_decay >= 0, f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        need(self.lora_rank is None or self.lora_rank >= 1, f"lora_rank must be >= 1, got {self.lora_rank}")
        need(
            self.lora_alpha is None or self.lora_alpha > 0,
            f"lora_alpha must be a finite number > 0, got {self.lora_alpha}",
        )
        need(
            self.lora_compute in LORA_COMPUTES,
            f"unknown lora_compute {self.lora_compute!r}; valid: {', '.join(LORA_COMPUTES)}",
        )
        need(
            self.lora_compute != "merged" or self.dtype == "float32",
            f"lora_compute=merged needs dtype float32, got {self.dtype} (merging would round the adapter)",
        )
        need(self.shift is None or self.shift > 0, f"shift must be > 0, got {self.shift}")
        need(self.window_start >= 0, f"window_start must be >= 0, got {self.window_start}")
        need(self.dtype in DTYPES, f"unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        need(self.model is None or bool(self.model.strip()), "model must be a spec like sd3:PATH, not empty")
        need(self.resolved_noise_level >= 0, f"noise_level must be >= 0, got {self.noise_level}")
        need(self.resolved_clip_range > 0, f"clip_range must be > 0, got {self.clip_range}")
        need(self.adv_clip > 0 and self.max_grad_norm > 0, "adv_clip and max_grad_norm must be > 0")
        need(self.updates_per_iteration >= 1, f"updates_per_iteration must be >= 1, got {self.updates_per_iteration}")
        need(
            self.updates_per_iteration <= self.batch_size,
            f"updates_per_iteration ({self.updates_per_iteration}) exceeds the batch size ({self.batch_size})",
        )
        need(self.inner_epochs >= 1, f"inner_epochs must be >= 1, got {self.inner_epochs}")
        need(self.eval_every >= 0 and self.checkpoint_every >= 1, "eval_every must be >= 0, checkpoint_every >= 1")
        need(self.eval_steps >= 1 and self.eval_samples_per_prompt >= 1, "eval_steps, eval_samples_per_prompt >= 1")
        need(
            self.final_eval_steps >= 1 and self.final_eval_samples >= 1,
            f"final_eval_steps and final_eval_samples must be >= 1, got {self.final_eval_steps}, "
            f"{self.final_eval_samples}",
        )
        need(self.guidance_scale >= 0, f"guidance_scale must be >= 0, got {self.guidance_scale}")
        chunk_ok = self.max_batch is None or self.max_batch >= 0
        need(chunk_ok, f"max_batch must be >= 0 (0: never split), got {self.max_batch}")
        need(self.decode_batch >= 1, f"decode_batch must be >= 1, got {self.decode_batch}")
        need(
            DEVICE_PATTERN.fullmatch(str(self.device)) is not None,
            f"unknown device {self.device!r}; valid: {', '.join(DEVICE_FORMS)}",
        )
        # "tensorboard,wandb", a list (from JSON or TOML) or a tuple: stored as a tuple, so configs compare equal
        log = tuple(self.log.split(",")) if isinstance(self.log, str) else tuple(self.log)
        object.__setattr__(self, "log", tuple(name.strip() for name in log if name.strip()))
        unknown = [name for name in self.log if name not in TRACKERS]
        need(not unknown, f"unknown tracker {unknown[0] if unknown else ''!r} in log; valid: {', '.join(TRACKERS)}")
        self._check_names()

    def _check_reward_noise_sd(self) -> None:
        """Reward repeats >= 1; the noise SD is auto (with repeats) or a number >= 0, for a noise-aware algorithm."""
        if self.reward_repeats < 1:
            raise ValueError(f"reward_repeats must be >= 1, got {self.reward_repeats}")
        value = self.reward_noise_sd
        if isinstance(value, str) and value.strip() != "auto":  # "0.05" from the command line is a number
            try:
                value = float(value)
            except ValueError:
                value = None
        if value is None or (not isinstance(value, str) and not (math.isfinite(value) and value >= 0)):
            raise ValueError(f"reward_noise_sd must be auto or a finite number >= 0, got {shown(self.reward_noise_sd)}")
        object.__setattr__(self, "reward_noise_sd", value.strip() if isinstance(value, str) else value)
        if value == 0:
            return
        if isinstance(value, str) and self.reward_repeats < 2:
            raise ValueError(
                "reward_noise_sd=auto pools the noise from repeated reward calls: give reward_repeats >= 2, "
                "or a number for reward_noise_sd"
            )
        if takes_noise_sd(self.algo) is False:  # an unknown name is reported with the valid ones by _check_names
            raise ValueError(
                f"reward_noise_sd is given to the noise-aware algorithms ({', '.join(noise_aware_algorithms())}); "
                f"{self.algo} takes none: leave reward_noise_sd at 0"
            )
        if "noise_sd" in self.algo_options:
            raise ValueError("give the noise SD once: reward_noise_sd or algo_options noise_sd, not both")

    def _check_finite(self) -> None:
        """Every number field holds a finite value: inf and nan pass ``> 0`` style checks or fail only mid-run."""
        hints = _field_hints()
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)  # not reward_noise_sd's "auto"
            if float in _field_types(hints[item.name]) and number and not math.isfinite(value):
                bound = {"learning_rate": " > 0", "lora_alpha": " > 0", "noise_level": " >= 0"}.get(item.name, "")
                raise ValueError(f"{item.name} must be a finite number{bound}, got {value}")

    def _check_names(self) -> None:
        """Names that resolve in registries (algorithm, task, reward, completion, noise) fail here, not mid-run.

        The algorithm and the reward-noise spec are resolved here, once (:attr:`algorithm`, :attr:`noise_spec`).
        """
        from creditzoo.envs.completion import parse_completion_mode
        from creditzoo.tasks import get_task

        task = get_task(self.env)
        if self.prompts is not None:  # reads the files: a missing or malformed one fails here, in one line
            from creditzoo.tasks.prompts import task_with_prompt_files

            task = task_with_prompt_files(task, self.prompts)
        self.algorithm  # noqa: B018  (resolves it, once; checks std_mode too)
        parse_completion_mode(self.completion)
        self.noise_spec  # noqa: B018  (parses it: a malformed spec fails here)
        if self.reward is not None and self.reward not in task.rewards and ":" not in self.reward:
            raise ValueError(
                f"unknown reward {self.reward!r} for {self.env}; valid: {', '.join(task.rewards)} "
                "(or 'package.module:function')"
            )
        available = len(task.train_prompts())
        if self.prompts_per_iteration > available:
            raise ValueError(
                f"prompts_per_iteration={self.prompts_per_iteration} exceeds the {available} train prompts of "
                f"{self.env}; valid: 1 to {available}"
            )
        if self.model is None and task.default_model is None:
            raise ValueError(f"task {self.env!r} has no default model; give one with --model sd3:/path/to/sd3.5-medium")

    @functools.cached_property
    def algorithm(self) -> Algorithm:
        """The algorithm with its options bound (``std_mode`` and ``algo_options``), resolved and checked once.

        Resolved while the configuration is checked; the learner, the preflight and collection read it.
        """
        return get_algorithm(self.algo, std_mode=self.std_mode, **self.algo_options)

    @functools.cached_property
    def noise_spec(self) -> NoiseSpec | None:
        """The parsed ``reward_noise`` (None without noise), parsed once while the configuration is checked."""
        from creditzoo.rewards.noise import parse_noise_spec

        return parse_noise_spec(self.reward_noise) if self.reward_noise is not None else None

    @property
    def default_group_size(self) -> int:
        """G when none is given: the one the rollout shape fixes (a tree's 2^|S| leaves), else 8."""
        fixed = rollout_shape(self.algo).group_size(self.algo_options, window_size=self.resolved_window_size)
        return DEFAULT_GROUP_SIZE if fixed is None else fixed

    @property
    def notes(self) -> list[str]:
        """Caveats ``config.json`` records beside the fields: today, an off-policy ``split_noise=code:C``."""
        from creditzoo.sampling import parse_split_noise

        takes = "split_noise" in rollout_shape(self.algo).option_names  # a tree's collector takes it
        spec = self.algo_options.get("split_noise") if takes else None
        note = parse_split_noise(spec).note if isinstance(spec, str) else ""
        return [note] if note else []

    @property
    def batch_size(self) -> int:
        """B = prompts_per_iteration x group_size trajectories per iteration."""
        return self.prompts_per_iteration * self.group_size

    @property
    def schedule(self) -> SlideSchedule | None:
        """The sliding-window schedule, or None for a fixed window."""
        return parse_window_schedule(self.window_schedule, self.num_steps) if self.window_schedule else None

    @property
    def resolved_window_size(self) -> int:
        """K, the window size (W of a sliding schedule, else ``window_size``, default T - 1)."""
        if self.window_schedule is not None:
            return parse_window_schedule(self.window_schedule, self.num_steps).size
        return self.window_size if self.window_size is not None else self.num_steps - 1

    @property
    def train_fraction(self) -> float | None:
        """F of ``train_steps="random:F"``, or None when every window step trains."""
        return parse_train_steps(self.train_steps) if self.train_steps is not None else None

    @property
    def resolved_step_weight(self) -> str:
        """The step weighting: ``step_weight`` if set, else the algorithm's default ("noise" for tempflow)."""
        if self.step_weight is not None:
            return self.step_weight
        return self.algorithm.default_step_weight

    @property
    def resolved_noise_level(self) -> float:
        """The SDE noise level a (default per sampler kind)."""
        return self.noise_level if self.noise_level is not None else DEFAULT_NOISE_LEVEL.get(self.sde_kind, 0.7)

    @property
    def resolved_cps_log_prob(self) -> str:
        """What a CPS step's log-prob is: "released" or "gaussian" ("gaussian", the only one, for Flow-GRPO's SDE)."""
        return self.cps_log_prob if self.cps_log_prob is not None else "gaussian"

    @property
    def resolved_clip_range(self) -> float:
        """The PPO clip range (default per sampler kind)."""
        return self.clip_range if self.clip_range is not None else DEFAULT_CLIP_RANGE.get(self.sde_kind, 1e-4)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {**dataclasses.asdict(self), "log": list(self.log)}

    @classmethod
    def for_task(cls, env: str = "geneval", **values: Any) -> TrainConfig:
        """The configuration ``creditzoo train --env ENV`` builds, for the Python API.

        Library defaults, then the task's ``train_defaults``, then ``values`` (TrainConfig fields).
        ``TrainConfig(env=...)`` alone keeps the library defaults.

        Raises:
            ValueError: an unknown environment or key, or an invalid value (the message names the valid ones).
        """
        from creditzoo.tasks import get_task

        defaults = dict(get_task(env).train_defaults)
        if rollout_shape(str(values.get("algo", cls.algo))).sets_group_size:
            defaults.pop("group_size", None)  # e.g. a tree's group size is its leaf count unless the user gives one
        return cls.from_dict({**defaults, **values, "env": env})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (a TOML file, a run's config.json), rejecting unknown keys with the valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**values)


def stored_values(values: dict[str, Any]) -> dict[str, Any]:
    """The fields of a stored ``config.json`` as this version reads them.

    Keys an older version did not write get the value that version trained with: a CPS run written before
    ``cps_log_prob`` existed used the exact density, "gaussian", not today's default.

    Args:
        values: the stored fields (without ``provenance``).

    Returns:
        A new dict, ready for :meth:`TrainConfig.from_dict`.
    """
    values = dict(values)
    if values.get("sde_kind") == "cps" and "cps_log_prob" not in values:
        values["cps_log_prob"] = "gaussian"
    return values


def takes_noise_sd(algo: str) -> bool | None:
    """Whether algorithm ``algo`` is noise-aware (takes ``noise_sd``); None for a name that does not resolve."""
    try:
        return "noise_sd" in option_names(algorithm_spec(algo).fn)
    except (ValueError, ImportError, AttributeError):  # reported with the valid names by get_algorithm
        return None


def noise_aware_algorithms() -> list[str]:
    """The registered algorithms that take ``noise_sd`` (docs/math.md section 10)."""
    return [name for name, spec in ALGORITHMS.items() if "noise_sd" in option_names(spec.fn)]


def rollout_shape(algo: str) -> RolloutShape:
    """The rollout shape ``algo`` needs (the default shape for a name that does not resolve: that fails later)."""
    try:
        return get_shape(algorithm_spec(algo).shape)
    except (ValueError, ImportError, AttributeError):  # reported with the valid names by get_algorithm
        return get_shape(DEFAULT_SHAPE)


TYPE_WORDS: dict[type, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a table of options",
    tuple: "a list of names",
}
"""How an error names the type a field expects."""


def field_value(name: str, value: Any) -> Any:
    """``value`` as TrainConfig field ``name`` stores it, or a ValueError naming the field and the type it takes.

    A bool is not an integer and a float is not an integer, even 2.0 (``iterations = 2.0`` in a TOML file is
    refused, not rounded); numpy integers and floats become Python ones; an integer where a number is due
    becomes a float. None is accepted where the field's default is None.

    Args:
        name: a TrainConfig field.
        value: what a TOML file, a config.json, the command line or a Python caller gave.

    Raises:
        ValueError: ``iterations must be an integer, got 2.0 (float)``.
    """
    kinds = _field_types(_field_hints()[name])
    if value is None and type(None) in kinds:
        return None
    if bool in kinds and isinstance(value, bool):
        return value
    if int in kinds and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return value if type(value) is int else int(value)
    if float in kinds and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return value if type(value) is float else float(value)
    if str in kinds and isinstance(value, str):
        return value
    if dict in kinds and isinstance(value, Mapping):
        return value if type(value) is dict else dict(value)
    if tuple in kinds and (isinstance(value, str) or _all_strings(value)):
        return value
    expected = " or ".join(TYPE_WORDS[kind] for kind in kinds if kind in TYPE_WORDS)
    raise ValueError(f"{name} must be {expected}, got {shown(value)} ({type(value).__name__})")


def _all_strings(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


@functools.cache
def _field_hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _field_types(hint: Any) -> tuple[type, ...]:
    """The types a field's annotation admits: ``int | None`` -> (int, NoneType), ``dict[str, Any]`` -> (dict,)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(kind for arg in typing.get_args(hint) for kind in _field_types(arg))
    origin = typing.get_origin(hint)
    return (origin,) if origin is not None else (hint,)
