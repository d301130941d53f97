"""Evaluation: sample a task's test prompts with the deterministic ODE sampler and score the images.

Overall scores follow GenEval (Ghosh et al. 2023): the overall strict accuracy is the mean of the
per-category accuracies (not the mean over prompts, which would let the most numerous category dominate);
likewise for the partial score (Flow-GRPO's partial GenEval reward).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from creditzoo.envs import DenoisingConfig, DenoisingEnv
from creditzoo.models.base import FlowModel
from creditzoo.sampling import ode_step
from creditzoo.tasks import Task

if TYPE_CHECKING:
    from PIL import Image

SPLITS = ("test", "train")


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
        seed: sample i (prompt-major order) uses noise from ``torch.Generator().manual_seed(seed * 1_000_003 + i)``,
            so results do not depend on ``batch_size``.
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


@dataclass(frozen=True)
class EvalResult:
    """Scores of one evaluation.

    Attributes:
        strict_accuracy: mean over categories of the fraction of images that are fully correct.
        partial_score: mean over categories of the mean partial score.
        per_category: category -> {"strict_accuracy", "partial_score", "count"} (count = images).
        images: float [N, 3, H, W] in [0, 1], prompt-major (all samples of a prompt are adjacent).
        prompts: the N prompts, aligned with ``images``.
        strict: float [N] per-image strict accuracy.
        partial: float [N] per-image partial score.
        extra_objects: float [N], 1 where the image holds more objects than its prompt names; None when the
            task's scorer does not report "extra_objects". Per category its mean is ``extra_object_rate``.
        extra_object_rate: mean over categories of the per-category extra-object rate (None as above).
    """

    strict_accuracy: float
    partial_score: float
    per_category: dict[str, dict[str, float]]
    images: torch.Tensor
    prompts: list[str]
    strict: torch.Tensor = field(repr=False)
    partial: torch.Tensor = field(repr=False)
    extra_objects: torch.Tensor | None = field(default=None, repr=False)
    extra_object_rate: float | None = None

    def to_dict(self) -> dict[str, object]:
        """The JSON-able summary: strict_accuracy, partial_score, per_category (and extra_object_rate if known)."""
        keys = ("strict_accuracy", "partial_score", "extra_object_rate")
        per_category = {name: {k: v[k] for k in keys if k in v} for name, v in self.per_category.items()}
        summary: dict[str, object] = {"strict_accuracy": self.strict_accuracy, "partial_score": self.partial_score}
        if self.extra_object_rate is not None:
            summary["extra_object_rate"] = self.extra_object_rate
        return {**summary, "per_category": per_category}

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON."""
        return json.dumps(self.to_dict())


def seeded_noise(shape: tuple[int, ...], seed: int, indices: range) -> torch.Tensor:
    """Standard normal noise [len(indices), *shape], row j drawn from seed ``seed * 1_000_003 + indices[j]``."""
    rows = [torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + i)) for i in indices]
    return torch.stack(rows)


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


def evaluation_prompts(task: Task, config: EvalConfig) -> list[str]:
    """The split's prompts, each repeated as many times as it is sampled (prompt-major, split order)."""
    split = task.test_prompts() if config.split == "test" else task.train_prompts()
    sizes: dict[str, int] = {}
    for prompt in split:
        sizes[task.category(prompt)] = sizes.get(task.category(prompt), 0) + 1
    prompts = []
    for prompt in split:
        repeats = max(config.samples_per_prompt, -(-config.min_images_per_category // sizes[task.category(prompt)]))
        prompts += [prompt] * repeats
    return prompts


def evaluate(model: FlowModel, task: Task, config: EvalConfig) -> EvalResult:
    """Sample every prompt of the split (see :func:`evaluation_prompts`) and score the images per category.

    Args:
        model: any :class:`~creditzoo.models.base.FlowModel` (a peft-wrapped model works too).
        task: supplies the prompts, their categories and the scorer.
        config: sampler and seed settings.

    Returns:
        :class:`EvalResult` (overall scores are means over categories, as GenEval reports them).
    """
    prompts = evaluation_prompts(task, config)
    device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else torch.device("cpu")
    images, strict, partial, extra = [], [], [], []
    for start in range(0, len(prompts), config.batch_size):
        batch = prompts[start : start + config.batch_size]
        noise = seeded_noise(tuple(model.sample_shape), config.seed, range(start, start + len(batch)))
        batch_images = sample_ode(
            model,
            batch,
            noise.to(device),
            num_steps=config.num_steps,
            guidance_scale=config.guidance_scale,
            shift=config.shift,
        ).cpu()  # [b, 3, H, W]
        scores = task.score(batch_images, batch)
        images.append(batch_images)
        strict.append(scores["strict_accuracy"].float().cpu())
        partial.append(scores["partial_score"].float().cpu())
        if "extra_objects" in scores:
            extra.append(scores["extra_objects"].float().cpu())
    strict_all, partial_all = torch.cat(strict), torch.cat(partial)  # [N], [N]
    extra_all = torch.cat(extra) if extra else None  # [N]
    per_category: dict[str, dict[str, float]] = {}
    categories = [task.category(p) for p in prompts]
    for name in dict.fromkeys(categories):
        mask = torch.tensor([c == name for c in categories])
        per_category[name] = {
            "strict_accuracy": float(strict_all[mask].mean()),
            "partial_score": float(partial_all[mask].mean()),
            "count": int(mask.sum()),
        }
        if extra_all is not None:
            per_category[name]["extra_object_rate"] = float(extra_all[mask].mean())
    rates = [v["extra_object_rate"] for v in per_category.values()] if extra_all is not None else None
    return EvalResult(
        strict_accuracy=sum(v["strict_accuracy"] for v in per_category.values()) / len(per_category),
        partial_score=sum(v["partial_score"] for v in per_category.values()) / len(per_category),
        per_category=per_category,
        images=torch.cat(images),
        prompts=prompts,
        strict=strict_all,
        partial=partial_all,
        extra_objects=extra_all,
        extra_object_rate=sum(rates) / len(rates) if rates else None,
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
