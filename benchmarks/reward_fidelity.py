"""Does the dense training reward pay for what the strict scorer forbids? Scenes rendered with and without an extra
object (a copy of an asked object), clean and dimmed, scored by strict and dense.

Run: python benchmarks/reward_fidelity.py [N per category]
"""

import sys

import numpy as np
import torch

from creditzoo.rewards.geneval import score_geneval
from creditzoo.tasks import geneval as g


def add_object(image: np.ndarray, shape: str, colour: str, rng: np.random.Generator) -> np.ndarray | None:
    """A copy of ``image`` [3, S, S] with one more object in a free spot (OBJECT_GAP from the others), or None."""
    size = image.shape[-1]
    occupied = np.linalg.norm(image - np.asarray(g.BACKGROUND, np.float32)[:, None, None], axis=0) > 0.1
    low, high = g._object_size_range(size)
    for _ in range(400):
        side = int(rng.integers(low, high + 1))
        top, left = (int(v) for v in rng.integers(1, size - side, size=2))
        gap = g.OBJECT_GAP
        if occupied[max(0, top - gap) : top + side + gap, max(0, left - gap) : left + side + gap].any():
            continue
        out = image.copy()
        window = out[:, top : top + side, left : left + side]
        window[:, g.shape_mask(shape, side)] = np.asarray(g.COLOURS[colour], np.float32)[:, None]
        return out
    return None


def scenes(category: str, count: int, rng: np.random.Generator, dim: float = 1.0):
    """(prompt, exact scene, scene with an extra copy of an asked object) for ``count`` prompts of ``category``."""
    prompts = [p for p in g.train_prompts() + g.test_prompts() if g.category_of(p) == category]
    rows = []
    while len(rows) < count:
        prompt = prompts[int(rng.integers(len(prompts)))]
        spec = g.parse_prompt(prompt)
        exact = g.render_scene(spec, rng)
        obj = spec.objects[int(rng.integers(len(spec.objects)))]
        colour = obj.colour or list(g.COLOURS)[int(rng.integers(len(g.COLOURS)))]
        extra = add_object(exact, obj.shape, colour, rng)
        if extra is None:
            continue
        rows.append((prompt, exact * dim, extra * dim))
    return rows


def main(count: int = 200) -> None:
    rng = np.random.default_rng(0)
    print(
        f"{'category':<14} {'dim':>4} {'strict ex/extra':>16} {'dense ex/extra':>16} {'dense extra>=exact':>19} "
        f"{'.. where strict extra=0':>24} {'viol. strict-order':>19}"
    )
    for dim in (1.0, 0.75):
        for category in g.CATEGORIES:
            rows = scenes(category, count, rng, dim)
            prompts = [r[0] for r in rows]
            exact = score_geneval(torch.from_numpy(np.stack([r[1] for r in rows])), prompts)
            extra = score_geneval(torch.from_numpy(np.stack([r[2] for r in rows])), prompts)
            pays = (extra.dense >= exact.dense).float()
            forbidden = extra.strict == 0
            # strict-correct exact scene must beat a strict-wrong extra scene of the same prompt
            wrong_order = ((exact.strict == 1) & forbidden & (extra.dense >= exact.dense)).float()
            print(
                f"{category:<14} {dim:>4} {exact.strict.mean():>7.3f}/{extra.strict.mean():<8.3f} "
                f"{exact.dense.mean():>7.3f}/{extra.dense.mean():<8.3f} {pays.mean():>19.3f} "
                f"{(pays[forbidden].mean() if forbidden.any() else torch.tensor(float('nan'))):>24.3f} "
                f"{wrong_order.mean():>19.3f}"
            )


def degrade(images: np.ndarray, kind: str) -> np.ndarray:
    """The same damage for every scene of a comparison: none, dimmed to 3/4, or blurred (sigma 0.6 px)."""
    from scipy import ndimage

    if kind == "dim":
        return images * 0.75
    if kind == "blur":
        return ndimage.gaussian_filter(images, (0, 0, 0.6, 0.6))
    return images


def order_violations(count: int = 60) -> None:
    """Per prompt: scenes that are strict-correct (exact, extra object where allowed) and strict-wrong (extra
    object where forbidden, scenes of other prompts of the category), all equally damaged; a violation is a
    strict-wrong scene whose dense score reaches a strict-correct one's."""
    rng = np.random.default_rng(1)
    print(f"\n{'category':<14} {'damage':>6} {'pairs':>6} {'dense wrong >= right':>21} {'min right - max wrong':>22}")
    for kind in ("none", "dim", "blur"):
        for category in g.CATEGORIES:
            prompts = [p for p in g.train_prompts() + g.test_prompts() if g.category_of(p) == category]
            pairs = violations = 0
            margins = []
            for prompt, exact, extra in scenes(category, count, rng):
                others = [p for p in prompts if p != prompt]
                decoys = [g.render_scene(g.parse_prompt(others[int(rng.integers(len(others)))]), rng) for _ in range(3)]
                images = torch.from_numpy(degrade(np.stack([exact, extra, *decoys]), kind).astype(np.float32))
                scores = score_geneval(images, [prompt] * len(images))
                right = scores.dense[scores.strict == 1]
                wrong = scores.dense[scores.strict == 0]
                if len(right) and len(wrong):
                    pairs += len(right) * len(wrong)
                    violations += int((wrong[None, :] >= right[:, None]).sum())
                    margins.append(float(right.min() - wrong.max()))
            print(f"{category:<14} {kind:>6} {pairs:>6} {violations / max(pairs, 1):>21.3f} {min(margins):>22.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
    order_violations()
