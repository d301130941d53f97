"""Evaluation: sample a task's test prompts with the deterministic ODE sampler and score the images.

Every evaluation of a task draws its initial noise from one fixed table (:class:`NoiseTable`), indexed by (test
prompt, sample index): the same for every run, adapter and base model of the task ("common random numbers"), so
that two models are compared on identical noise and per-image differences can be paired.

The scores are the task's metrics (:attr:`~creditzoo.tasks.Task.metrics`). Overall scores follow GenEval (Ghosh et
al. 2023): a metric's overall value is the mean of its per-category means (not the mean over prompts, which would
let the most numerous category dominate).
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from creditzoo.envs import DenoisingConfig, DenoisingEnv
from creditzoo.models.base import FlowModel
from creditzoo.sampling import ode_step
from creditzoo.tasks import Metric, Task

if TYPE_CHECKING:
    from PIL import Image

SPLITS = ("test", "train")
NOISE_TABLE_KIND = "blake2b"
"""How :class:`NoiseTable` derives a sample's seed; the first part of every table name."""


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate.

    Attributes:
        num_steps: Euler ODE steps.
        guidance_scale: classifier-free guidance scale (1.0 = none, the toy model's best: guidance lowers its accuracy).
        samples_per_prompt: images per prompt, each from its own seeded noise.
        min_images_per_category: a category with n prompts gets ``max(samples_per_prompt,
            ceil(min_images_per_category / n))`` samples per prompt, so that small categories (the geneval test
            split has one single-object prompt) are measured on enough images; 0 turns this off.
        seed: the seed of the task's noise table (:class:`NoiseTable`): sample j of prompt p starts from the same
            noise whatever ``batch_size``, ``samples_per_prompt`` or ``min_images_per_category`` are.
        batch_size: images per model call (2x that with guidance).
        shift: SD3 time shift of the sigma grid.
        split: "test" (held-out prompts, the default) or "train".
    """

    num_steps: int = 40
    guidance_scale: float = 1.0
    samples_per_prompt: int = 8
    min_images_per_category: int = 32
    seed: int = 0
    batch_size: int = 64
    shift: float = 1.0
    split: str = "test"

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if self.samples_per_prompt < 1:
            raise ValueError(f"samples_per_prompt must be >= 1, got {self.samples_per_prompt}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.min_images_per_category < 0:
            raise ValueError(f"min_images_per_category must be >= 0, got {self.min_images_per_category}")
        if not self.shift > 0:
            raise ValueError(f"shift must be > 0, got {self.shift}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; valid splits: {', '.join(SPLITS)}")

    def protocol(self, name: str, task: str) -> dict[str, object]:
        """The JSON record naming this evaluation's protocol, stored beside every score it produces.

        Args:
            name: what the protocol is for ("intermediate", "final", "cli").
            task: the task's name (it selects the noise table).

        Returns:
            ``{"name", "num_steps", "samples_per_prompt", "min_images_per_category", "guidance_scale", "shift",
            "split", "noise_table", "sampler"}``.
        """
        return {
            "name": name,
            "num_steps": self.num_steps,
            "samples_per_prompt": self.samples_per_prompt,
            "min_images_per_category": self.min_images_per_category,
            "guidance_scale": self.guidance_scale,
            "shift": self.shift,
            "split": self.split,
            "noise_table": NoiseTable(task, self.seed).name,
            "sampler": "ode",
        }


@dataclass(frozen=True)
class NoiseTable:
    """A task's evaluation noise: one fixed standard-normal draw per (prompt, sample index).

    Sample j of prompt p starts from ``torch.randn(shape, generator=torch.Generator().manual_seed(s))`` with
    ``s`` the first 8 bytes of ``blake2b(json.dumps([seed, task, p, j]))`` (little-endian) shifted right by one
    bit (63 bits). The draw does not depend on which other samples are evaluated, their order, the batch size or
    the process, and it is made on the CPU, so every device starts from the same noise.

    Attributes:
        task: the task's name (different tasks get unrelated tables).
        seed: the table's seed (different seeds give unrelated tables).
    """

    task: str
    seed: int = 0

    @property
    def name(self) -> str:
        """The table's name, recorded with every evaluation, e.g. ``"blake2b:geneval:0"``."""
        return f"{NOISE_TABLE_KIND}:{self.task}:{self.seed}"

    def sample_seed(self, prompt: str, sample_index: int) -> int:
        """The 63-bit generator seed of sample ``sample_index`` of ``prompt``."""
        key = json.dumps([self.seed, self.task, prompt, sample_index], ensure_ascii=False).encode("utf-8")
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1

    def noise(self, shape: tuple[int, ...], prompts: list[str], sample_indices: list[int]) -> torch.Tensor:
        """The table's noise [N, *shape] (float32, CPU) of the N (prompt, sample index) pairs, row by row."""
        if len(prompts) != len(sample_indices):
            raise ValueError(f"need one sample index per prompt, got {len(prompts)} and {len(sample_indices)}")
        generator = torch.Generator()
        rows = [
            torch.randn(shape, generator=generator.manual_seed(self.sample_seed(p, j)))
            for p, j in zip(prompts, sample_indices, strict=True)
        ]
        return torch.stack(rows) if rows else torch.zeros((0, *shape))


@dataclass(frozen=True)
class EvalSample:
    """One image of an evaluation: which prompt of the split, and which of its samples.

    Attributes:
        prompt_index: the prompt's index in the split (``task.test_prompts()`` or ``task.train_prompts()``).
        prompt: the prompt text.
        category: its category (``task.category(prompt)``).
        sample_index: 0, 1, ... among the prompt's samples; with the prompt it selects the noise.
    """

    prompt_index: int
    prompt: str
    category: str
    sample_index: int


@dataclass(frozen=True)
class EvalResult:
    """Scores of one evaluation, one per metric of the task (:attr:`~creditzoo.tasks.Task.metrics`).

    Attributes:
        metrics: the task's metrics, in order.
        summary: each metric's mean name -> its category-balanced mean (the mean over categories of the
            per-category mean), e.g. ``{"partial_score": 0.71, "strict_accuracy": 0.40, "extra_object_rate": 0.1}``.
        per_category: category -> {mean name: the category's mean, ..., "count": images}.
        images: float [N, 3, H, W] in [0, 1], prompt-major (all samples of a prompt are adjacent).
        prompts: the N prompts, aligned with ``images``.
        scores: each metric's name -> float [N] per-image scores (e.g. ``scores["extra_objects"]``).
        samples: the N images' :class:`EvalSample` (prompt index, category, sample index), aligned with ``images``.
        noise_table: the name of the :class:`NoiseTable` the images started from.
    """

    metrics: tuple[Metric, ...]
    summary: dict[str, float]
    per_category: dict[str, dict[str, float]]
    images: torch.Tensor
    prompts: list[str]
    scores: dict[str, torch.Tensor] = field(repr=False)
    samples: list[EvalSample] = field(default_factory=list, repr=False)
    noise_table: str | None = None

    def correct(self) -> torch.Tensor | None:
        """Which images are correct, bool [N], by the first correctness metric; None when the task has none."""
        first = next((metric for metric in self.metrics if metric.correctness), None)
        return None if first is None else self.scores[first.name] > 0.5

    def to_dict(self) -> dict[str, object]:
        """The JSON-able summary: each metric's mean, then ``per_category`` (each category's means, no counts)."""
        means = [metric.mean for metric in self.metrics]
        per_category = {name: {k: row[k] for k in means} for name, row in self.per_category.items()}
        return {**self.summary, "per_category": per_category}

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON."""
        return json.dumps(self.to_dict())

    def image_records(self) -> list[dict[str, object]]:
        """One JSON-ready record per image: prompt index, prompt, category, sample index and its scores.

        The scores are the task's per-image metrics under their names (GenEval: ``partial_score``,
        ``strict_accuracy``, ``extra_objects``). Grouped by category and averaged, then averaged over categories,
        they give :meth:`to_dict`'s summary.
        """
        records = []
        for i, sample in enumerate(self.samples):
            record: dict[str, object] = {
                "prompt_index": sample.prompt_index,
                "prompt": sample.prompt,
                "category": sample.category,
                "sample_index": sample.sample_index,
            }
            record.update({metric.name: float(self.scores[metric.name][i]) for metric in self.metrics})
            records.append(record)
        return records

    def to_record(
        self, protocol: dict[str, object], task: str, *, iteration: int | None = None, adapter: str | None = None
    ) -> dict[str, object]:
        """The evaluation file with per-image scores (``eval/final.json``, ``eval/base.json``, ``eval --records``).

        Args:
            protocol: :meth:`EvalConfig.protocol` of the evaluation.
            task: the task's name.
            iteration: the training iteration of the weights (0 for the base model; None outside a run).
            adapter: the adapter's path relative to the run directory, None for the base model.

        Returns:
            ``{"protocol", "task", "iteration", "adapter", "metrics", "summary", "images"}``: ``metrics`` lists the
            per-image score keys, ``summary`` is :meth:`to_dict` and ``images`` is :meth:`image_records`.
        """
        return {
            "protocol": protocol,
            "task": task,
            "iteration": iteration,
            "adapter": adapter,
            "metrics": [metric.name for metric in self.metrics],
            "summary": self.to_dict(),
            "images": self.image_records(),
        }


@torch.no_grad()
def sample_ode(
    model: FlowModel,
    prompts: list[str],
    noise: torch.Tensor,
    *,
    num_steps: int,
    guidance_scale: float = 1.0,
    shift: float = 1.0,
) -> torch.Tensor:
    """Sample images with the Euler ODE from ``noise`` [B, *sample_shape]; returns images [B, 3, H, W] in [0, 1].

    Runs through the same :class:`~creditzoo.envs.DenoisingEnv` as training (its sigma grid, guidance, chunked
    model calls and decoding), with every step an ODE step and no reward.
    """
    config = DenoisingConfig(num_steps=num_steps, shift=shift, guidance_scale=guidance_scale, completion=None)
    env = DenoisingEnv(model, None, num_envs=len(prompts), config=config)
    obs, _ = env.reset(options={"prompts": list(prompts), "noise": noise})
    info: dict = {}
    for j in range(num_steps):
        action = ode_step(env.velocity(), obs["latent"], env.sigmas[j], env.sigmas[j + 1])
        obs, _, _, _, info = env.step(action)
    return info["images"]


def record_json(record: dict[str, object]) -> str:
    """An evaluation record (:meth:`EvalResult.to_record`) as JSON text: indented, one line per image record.

    One image a line keeps the file about three times smaller than fully indented JSON, and diffs readable.
    """
    head = json.dumps({key: value for key, value in record.items() if key != "images"}, indent=2)
    rows = ",\n".join(f"    {json.dumps(image)}" for image in record.get("images", []))  # type: ignore[union-attr]
    return f'{head[:-2]},\n  "images": [\n{rows}\n  ]\n}}\n'


def evaluation_samples(task: Task, config: EvalConfig) -> list[EvalSample]:
    """Every image an evaluation samples, prompt-major in split order: sample indices 0 .. n-1 of each prompt.

    A prompt gets ``n = max(samples_per_prompt, ceil(min_images_per_category / prompts in its category))``
    samples, so that small categories are measured on enough images.
    """
    split = task.test_prompts() if config.split == "test" else task.train_prompts()
    categories = [task.category(prompt) for prompt in split]
    sizes: dict[str, int] = {}
    for category in categories:
        sizes[category] = sizes.get(category, 0) + 1
    samples = []
    for index, (prompt, category) in enumerate(zip(split, categories, strict=True)):
        repeats = max(config.samples_per_prompt, -(-config.min_images_per_category // sizes[category]))
        samples += [EvalSample(index, prompt, category, j) for j in range(repeats)]
    return samples


def evaluation_prompts(task: Task, config: EvalConfig) -> list[str]:
    """The split's prompts, each repeated as many times as it is sampled (:func:`evaluation_samples`' prompts)."""
    return [sample.prompt for sample in evaluation_samples(task, config)]


def evaluate(model: FlowModel, task: Task, config: EvalConfig) -> EvalResult:
    """Sample every prompt of the split (see :func:`evaluation_prompts`) and score the images per category.

    Args:
        model: any :class:`~creditzoo.models.base.FlowModel` (a peft-wrapped model works too).
        task: supplies the prompts, their categories, the scorer and the metrics it reports.
        config: sampler and noise-table settings.

    Returns:
        :class:`EvalResult` (overall scores are means over categories, as GenEval reports them).

    Raises:
        ValueError: the task's scorer did not return one of its metrics (naming it).
    """
    samples = evaluation_samples(task, config)
    prompts = [sample.prompt for sample in samples]
    table = NoiseTable(task.name, config.seed)
    device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else torch.device("cpu")
    images: list[torch.Tensor] = []
    scores: dict[str, list[torch.Tensor]] = {metric.name: [] for metric in task.metrics}
    for start in range(0, len(prompts), config.batch_size):
        batch = prompts[start : start + config.batch_size]
        indices = [sample.sample_index for sample in samples[start : start + config.batch_size]]
        noise = table.noise(tuple(model.sample_shape), batch, indices)  # [b, *sample_shape]
        batch_images = sample_ode(
            model,
            batch,
            noise.to(device),
            num_steps=config.num_steps,
            guidance_scale=config.guidance_scale,
            shift=config.shift,
        ).cpu()  # [b, 3, H, W]
        batch_scores = task.score(batch_images, batch)
        images.append(batch_images)
        for name, kept in scores.items():
            if name not in batch_scores:
                raise ValueError(
                    f"task {task.name!r}'s scorer returned no {name!r} (returned: {', '.join(batch_scores)}); "
                    f"its metrics: {', '.join(scores)}"
                )
            kept.append(batch_scores[name].float().cpu())  # [b]
    per_image = {name: torch.cat(kept) for name, kept in scores.items()}  # each [N]
    categories = [sample.category for sample in samples]
    per_category: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(categories):
        mask = torch.tensor([c == name for c in categories])
        row = {metric.mean: float(per_image[metric.name][mask].mean()) for metric in task.metrics}
        per_category[name] = {**row, "count": int(mask.sum())}
    summary = {
        metric.mean: sum(row[metric.mean] for row in per_category.values()) / len(per_category)
        for metric in task.metrics
    }
    return EvalResult(
        metrics=task.metrics,
        summary=summary,
        per_category=per_category,
        images=torch.cat(images),
        prompts=prompts,
        scores=per_image,
        samples=samples,
        noise_table=table.name,
    )


def save_grid(
    images: torch.Tensor,
    prompts: list[str],
    path: str | Path,
    *,
    columns: int = 8,
    scale: int = 3,
    marks: torch.Tensor | None = None,
) -> Path:
    """Write :func:`grid_image` of ``images`` to the PNG file ``path`` (parent folders are created).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_image(images, prompts, columns=columns, scale=scale, marks=marks).save(path)
    return path


def grid_image(
    images: torch.Tensor,
    prompts: list[str],
    *,
    columns: int = 8,
    scale: int = 3,
    marks: torch.Tensor | None = None,
) -> Image.Image:
    """A grid of images, each labelled with its prompt below it.

    Args:
        images: float [N, 3, H, W] in [0, 1].
        prompts: N labels.
        columns: images per row.
        scale: nearest-neighbour upscaling of each image.
        marks: optional bool [N]; True draws a green frame, False a red one (e.g. strict correctness).

    Returns:
        An RGB PIL image.
    """
    from PIL import Image, ImageDraw

    if images.ndim != 4 or images.shape[1] != 3 or len(prompts) != images.shape[0]:
        raise ValueError(f"need images [N, 3, H, W] and N prompts, got {tuple(images.shape)} and {len(prompts)}")
    n, _, height, width = images.shape
    cell_w, cell_h = width * scale, height * scale
    chars = max(cell_w // 6, 8)
    label_lines = 3
    label_h = 11 * label_lines + 4
    rows = (n + columns - 1) // columns
    pad = 4
    canvas = Image.new("RGB", (columns * (cell_w + pad) + pad, rows * (cell_h + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # [N, H, W, 3]
    for i in range(n):
        x = pad + (i % columns) * (cell_w + pad)
        y = pad + (i // columns) * (cell_h + label_h + pad)
        tile = Image.fromarray(pixels[i]).resize((cell_w, cell_h), Image.NEAREST)
        canvas.paste(tile, (x, y))
        if marks is not None:
            colour = (0, 170, 0) if bool(marks[i]) else (210, 0, 0)
            draw.rectangle([x - 2, y - 2, x + cell_w + 1, y + cell_h + 1], outline=colour, width=2)
        lines = textwrap.wrap(prompts[i], width=chars)[:label_lines]
        draw.multiline_text((x, y + cell_h + 3), "\n".join(lines), fill="black", spacing=1)
    return canvas
