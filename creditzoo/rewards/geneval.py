"""Programmatic GenEval scorer for the embedded shapes task (:mod:`creditzoo.tasks.geneval`).

GenEval (Ghosh et al., NeurIPS 2023) runs an object detector and checks each prompt's clauses; Flow-GRPO
(Liu et al., 2025, "Flow-GRPO: Training Flow Matching Models via Online RL") trains on a partial version of
the same check. Here the detector is exact image analysis, so the three scores below are cheap (well under
a millisecond per 32x32 image) and deterministic.

Detection. Each pixel carries a weight ``w`` rising linearly from 0 at distance ``FG_LOW`` from ``BACKGROUND``
to 1 at ``FG_HIGH``. Objects are the 4-connected components of the *core* pixels (``w >= 0.5``); a faint pixel
(``0 < w < 0.5``) next to a core pixel (8-neighbourhood) joins that pixel's component, but faint pixels never
link two components, so faint bridges and background noise cannot merge objects. From the weighted pixels
of a component we compute its centroid, extent (``sqrt(12 * variance)`` per axis), effective area
``(sum w)^2 / sum w^2``, elongation, compactness (second moment / area), vertical and horizontal skewness,
the four-fold moment ``c4 = E[dx^4 + dy^4 - 6 dx^2 dy^2] / E[r^2]^2`` and its colour likeness: the weighted
mean over its pixels of a ramp that is 1 within ``COLOUR_FULL`` of a palette colour and 0 beyond
``COLOUR_NONE``. Shapes are told apart by moments: upward triangles are skewed (vertical skewness about
-0.5), squares have ``c4`` about -0.6, circles are symmetric with ``c4`` near 0.

Every threshold is a linear ramp (constants below): a component's quality is the product of its size,
elongation and compactness ramps, its likeness to each shape a product of skewness and ``c4`` ramps. The
*soft* detector (dense score) weights pixels by ``w`` and keeps these values. The *hard* detector (strict and
partial scores) weights the core pixels 1 and the rest 0, keeps a component as an object when its quality
reaches 0.5, gives it the shape whose likeness reaches 0.5 (none if no shape does) and one colour, the most
likely (GenEval's CLIP colour classifier likewise always picks one; none when no pixel is within
``COLOUR_NONE`` of the palette).

Clauses. A prompt is a list of clauses, each scored in [0, 1] from the detected objects:

* presence of shape S (every category except counting): 1 if any object is an S;
* count of shape S (counting, n requested, k found): ``max(0, 1 - |n - k| / n)``;
* colour c of shape S (colors, color_attr): 1 if some S has colour c;
* relation (position, "A rel B"): 1 if an A and a B exist and every (A, B) pair satisfies the relation
  under GenEval's rule: with centre offset ``o = c_A - c_B`` and
  ``r = max(|o| - 0.1 * (extent_A + extent_B), 0) * sign(o) / ||o||`` per axis, "left of" is ``r_x < -0.5``,
  "right of" ``r_x > 0.5``, "above" ``r_y < -0.5``, "below" ``r_y > 0.5`` (y grows downwards).

The clauses per category: single_object [presence]; two_object [presence A, presence B]; counting [count];
colors [presence, colour]; position [presence A, presence B, relation]; color_attr [presence A, colour A,
presence B, colour B]. Extra objects never fail a clause except through the count (as in GenEval).

Scores, each float32 [B]:

* **strict**: 1 if every clause is 1, else 0: GenEval's per-image correctness (exact count for counting,
  at least one instance elsewhere).
* **partial**: the mean of the clauses: Flow-GRPO's partial GenEval reward (its counting clause is
  ``1 - |n - k| / n``, clipped here at 0; its colour and position clauses score 0 when the object is missing).
* **dense**: the same clauses computed by the soft detector, with soft object scores
  ``a[o, S] = quality[o] * likeness[o, S]`` (quality also multiplied by a ramp on the w-weighted mean of
  ``w``, so that fading objects leave smoothly): presence ``max_o a[o, S]``; colour
  ``max_o a[o, S] * colour[o, c]``. Where the strict rules count objects, dense counts them as the hard
  detector does: ``c[o, S]`` is a steep ramp on ``presence[o] * likeness[o, S]``, where presence is 1 for a dim
  but solid object (whose ``a`` is well below 1). Count: ``max(0, 1 - |n - sum_o c[o, S]| / n)`` times the
  c-weighted mean of ``a`` over the n best objects (so damage lowers exact and wrong counts alike).
  Relation: ``max a[., A] * max a[., B] * prod_pairs(1 - c[o1, A] c[o2, B] (1 - ramp(r)))`` over distinct
  pairs, GenEval's every-pair rule made soft, with the ramp going 0 -> 1 as ``r`` goes 0.4 -> 0.6. (Until
  this rule the count was ``sum_o a[o, S]`` and the relation a weighted mean over pairs, which paid for an
  extra dim object or a wrong-side extra one: benchmarks/reward_fidelity.md.) On clean renders every ramp is
  saturated, so dense equals partial. As an image blurs,
  fades or gets noisier, dense moves nearly continuously (it jumps where components merge or split, and by
  a faint pixel's small weight when a core grows next to it) while partial moves in steps of a whole clause.
  Dense sees some damage partial ignores: dim colours, soft edges and rounded corners lower it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from creditzoo.worlds.geneval import BACKGROUND, COLOURS, SHAPES, PromptSpec, parse_prompt

FG_LOW, FG_HIGH = 0.3, 0.7
"""Foreground ramp on the distance to ``BACKGROUND`` (palette colours are at least 0.8 away)."""
COLOUR_FULL, COLOUR_NONE = 0.15, 0.55
"""Colour ramp on the distance to a palette colour (palette colours are at least 0.6 apart)."""
AREA_LOW, AREA_HIGH = 6.0, 14.0
"""Size ramp on the effective area in px at 32x32 (scaled with H * W); the smallest render has 31 px."""
ELONGATION_OK, ELONGATION_BAD = 0.30, 0.45
"""Ramp on the eccentricity of the second moments (renders: at most 0.14; a 2:1 bar: 0.6)."""
COMPACT_OK, COMPACT_BAD = 0.24, 0.32
"""Ramp on E[r^2] / area (renders: 0.158-0.19)."""
SKEW_LOW, SKEW_HIGH = 0.10, 0.35
"""Ramp on skewness: triangles have vertical skewness -0.5 to -0.55, circles and squares 0."""
SQUARE_C4_LOW, SQUARE_C4_HIGH = -0.15, -0.45
"""Ramp on the four-fold moment c4 towards squares (about -0.61; circles -0.07 to 0.23)."""
ROUND_C4_LOW, ROUND_C4_HIGH = 0.45, 0.30
"""Ramp on c4 for circles: 1 up to 0.30, 0 from 0.45 (diamonds and crosses have c4 > 0.5)."""
CONFIDENCE_LOW, CONFIDENCE_HIGH = 0.5, 0.9
"""Dense ramp on a component's w-weighted mean pixel weight: an object whose last core pixel (w >= 0.5)
fades away has a mean below 0.5, so it leaves the dense score continuously."""
RELATION_LOW, RELATION_HIGH = 0.4, 0.6
"""Dense ramp on GenEval's normalised relative offset (the hard threshold is 0.5)."""
PRESENCE_LOW, PRESENCE_HIGH = 0.5, 0.6
"""Ramp on the w-weighted mean pixel weight for how surely the hard detector finds a component (its core
pixels have w >= 0.5): a dim but solid object is fully present, though its dense quality is lowered. It starts
where a component appears (its first core pixels: a mean near 0.5), so an object fading in counts continuously."""
COUNTED_LOW, COUNTED_HIGH = 0.2, 0.5
"""Dense ramp from ``presence[o] * likeness[o, S]`` to how much the object counts as one S where the strict rules
count objects (the counting clause's excess, the pairs of the position rule). The hard detector counts every
object it finds as a whole one, however faint; summing the soft scores ``a[o, S]`` instead let a picture with
one dim object too many score the count (and a wrong-side pair weigh on the relation) as if nearly right, so RL
was paid for extra objects."""
POSITION_THRESHOLD = 0.1
"""GenEval's POSITION_THRESHOLD: the fraction of the objects' extents discounted from their offset."""

_PALETTE = np.asarray(list(COLOURS.values()), dtype=np.float32)  # [C, 3]
_BACKGROUND = np.asarray(BACKGROUND, dtype=np.float32)  # [3]
_CONNECT_WITHIN_IMAGE = np.zeros((3, 3, 3), dtype=bool)
_CONNECT_WITHIN_IMAGE[1] = ndimage.generate_binary_structure(2, 1)  # 4-connected in an image, not across
_NEIGHBOURS_WITHIN_IMAGE = np.zeros((3, 3, 3), dtype=bool)
_NEIGHBOURS_WITHIN_IMAGE[1] = True  # the 3x3 neighbourhood in an image
_SHAPE_INDEX = {shape: index for index, shape in enumerate(SHAPES)}
_COLOUR_INDEX = {colour: index for index, colour in enumerate(COLOURS)}
_EPS = 1e-8


@dataclass(frozen=True)
class GenEvalScores:
    """Scores of a batch of images, each float32 [B] on the images' device.

    Attributes:
        strict: 1.0 if the image satisfies every clause of its prompt, else 0.0 (GenEval correctness).
        partial: mean clause score in [0, 1] (Flow-GRPO's partial GenEval reward).
        dense: continuous variant of ``partial`` in [0, 1]; equal to it on clean renders.
        objects: how many objects the hard detector finds (any shape).
        extra_objects: 1.0 if it finds more objects than the prompt names (a count of n names n), else 0.0.
            GenEval forbids extra objects only when counting; elsewhere this measures a habit, not an error.
    """

    strict: torch.Tensor
    partial: torch.Tensor
    dense: torch.Tensor
    objects: torch.Tensor
    extra_objects: torch.Tensor


@dataclass(frozen=True)
class Detections:
    """Detected objects of a batch, flattened over images (objects of image b: ``offsets[b]:offsets[b+1]``).

    Attributes:
        offsets: int [B + 1].
        quality: [N] in [0, 1]: how much each component counts as an object at all.
        presence: [N] in [0, 1]: how surely the hard detector finds it (soft: 1 for a dim but solid object,
            whose ``quality`` is lowered by its faintness); equal to ``quality`` for the hard detector.
        shape: [N, len(SHAPES)] shape likeness in [0, 1] (one-hot or zero for the hard detector).
        colour: [N, len(COLOURS)] colour likeness in [0, 1] (one-hot for the hard detector).
        centre: [N, 2] (y, x) weighted centroid in px.
        extent: [N, 2] (height, width) in px.
    """

    offsets: np.ndarray
    quality: np.ndarray
    presence: np.ndarray
    shape: np.ndarray
    colour: np.ndarray
    centre: np.ndarray
    extent: np.ndarray


def _ramp(value: np.ndarray, zero_at: float, one_at: float) -> np.ndarray:
    """Linear ramp: 0 at ``zero_at``, 1 at ``one_at`` (either order), clipped."""
    return np.clip((value - zero_at) / (one_at - zero_at), 0.0, 1.0)


def _features(
    weight: np.ndarray, index: np.ndarray, y: np.ndarray, x: np.ndarray, match: np.ndarray, count: int
) -> dict[str, np.ndarray]:
    """Weighted per-component moments.

    Args:
        weight: [P] pixel weights in [0, 1] (P foreground pixels of the whole batch).
        index: int [P] component of each pixel, 0..count-1.
        y: [P] pixel-centre row coordinates.
        x: [P] pixel-centre column coordinates.
        match: [P, C] per-pixel colour ramps.
        count: number of components N.

    Returns:
        Arrays of shape [N] (``colour``: [N, C]).
    """

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=values, minlength=count)  # [N]

    mass = total(weight)  # [N]
    safe = np.maximum(mass, _EPS)
    cy, cx = total(weight * y) / safe, total(weight * x) / safe  # [N], [N]
    dy, dx = y - cy[index], x - cx[index]  # [P], [P]
    myy, mxx, mxy = total(weight * dy**2) / safe, total(weight * dx**2) / safe, total(weight * dx * dy) / safe
    r2 = mxx + myy  # [N]
    area = mass**2 / np.maximum(total(weight**2), _EPS)  # effective pixel count, [N]
    c4 = total(weight * (dx**4 + dy**4 - 6 * dx**2 * dy**2)) / safe  # [N]
    colour = np.stack([total(weight * match[:, c]) for c in range(match.shape[1])], axis=1) / safe[:, None]
    return {
        "mass": mass,
        "confidence": total(weight**2) / safe,
        "area": area,
        "cy": cy,
        "cx": cx,
        "height": np.sqrt(12 * myy),
        "width": np.sqrt(12 * mxx),
        "elongation": np.sqrt((mxx - myy) ** 2 + 4 * mxy**2) / np.maximum(r2, _EPS),
        "compactness": r2 / np.maximum(area, _EPS),
        "skew_y": total(weight * dy**3) / safe / np.maximum(myy, _EPS) ** 1.5,
        "skew_x": total(weight * dx**3) / safe / np.maximum(mxx, _EPS) ** 1.5,
        "c4": c4 / np.maximum(r2, _EPS) ** 2,
        "colour": colour,  # [N, C]
    }


def _likelihoods(feat: dict[str, np.ndarray], pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Object quality [N] and shape likeness [N, S] from the features (ramps, before any hard cut)."""
    scale = pixels / 1024.0
    quality = (
        _ramp(feat["area"], AREA_LOW * scale, AREA_HIGH * scale)
        * _ramp(feat["elongation"], ELONGATION_BAD, ELONGATION_OK)
        * _ramp(feat["compactness"], COMPACT_BAD, COMPACT_OK)
    )  # [N]
    quality = np.where(feat["mass"] > _EPS, quality, 0.0)
    upward = _ramp(-feat["skew_y"], SKEW_LOW, SKEW_HIGH)  # [N] triangle-like skew
    level = _ramp(np.abs(feat["skew_y"]), SKEW_HIGH, SKEW_LOW)  # [N] vertically symmetric
    mirror = _ramp(np.abs(feat["skew_x"]), SKEW_HIGH, SKEW_LOW)  # [N] horizontally symmetric
    cornered = _ramp(feat["c4"], SQUARE_C4_LOW, SQUARE_C4_HIGH)  # [N] square-like
    round_ = _ramp(feat["c4"], ROUND_C4_LOW, ROUND_C4_HIGH)  # [N] not diamond- or cross-like
    likeness = {
        "circle": level * (1 - cornered) * round_ * mirror,
        "square": level * cornered * mirror,
        "triangle": upward * mirror,
    }
    return quality, np.stack([likeness[shape] for shape in SHAPES], axis=1)  # [N], [N, S]


def detect(images: np.ndarray) -> tuple[Detections, Detections]:
    """Find the objects in a batch of images with the hard and the soft detector.

    Args:
        images: float32 [B, 3, H, W] in [0, 1].

    Returns:
        (hard, soft) detections over the same components.
    """
    batch, _, height, width = images.shape
    pixels = np.moveaxis(images, 1, -1)  # [B, H, W, 3]
    weight = _ramp(np.linalg.norm(pixels - _BACKGROUND, axis=-1), FG_LOW, FG_HIGH)  # [B, H, W]
    core = weight >= 0.5  # [B, H, W]
    labels, count = ndimage.label(core, structure=_CONNECT_WITHIN_IMAGE)  # [B, H, W], N
    # A faint pixel (0 < w < 0.5) next to a core pixel (edge neighbours first, then corner neighbours)
    # joins that pixel's component; faint pixels never link two components, so faint bridges and background
    # noise cannot merge objects, and blurred edges enter their object with weights near 0.
    beside = ndimage.grey_dilation(labels, footprint=_CONNECT_WITHIN_IMAGE)  # [B, H, W]
    around = ndimage.grey_dilation(labels, footprint=_NEIGHBOURS_WITHIN_IMAGE)  # [B, H, W]
    attached = np.where(beside > 0, beside, around)  # [B, H, W]
    labels = np.where(core, labels, np.where(weight > 0, attached, 0))
    b, y, x = np.nonzero(labels)  # [P] each, C order, so component ids grow with b
    index = labels[b, y, x] - 1  # [P]
    first_pixel = np.full(count, -1)
    first_pixel[index[::-1]] = np.arange(len(index))[::-1]
    offsets = np.searchsorted(b[first_pixel], np.arange(batch + 1)) if count else np.zeros(batch + 1, int)
    colour_distance = np.linalg.norm(pixels[b, y, x][:, None, :] - _PALETTE[None], axis=-1)  # [P, C]
    match = _ramp(colour_distance, COLOUR_NONE, COLOUR_FULL)  # [P, C]
    soft_weight = weight[b, y, x]  # [P]
    ys, xs = y + 0.5, x + 0.5
    results = []
    for hard in (True, False):
        pixel_weight = (soft_weight >= 0.5).astype(np.float64) if hard else soft_weight
        feat = _features(pixel_weight, index, ys, xs, match, count)
        quality, shape = _likelihoods(feat, height * width)
        colour = feat["colour"]  # [N, C]
        if hard:
            shape = np.where(shape.max(axis=1, keepdims=True) >= 0.5, _one_hot(shape), 0.0)
            quality = (quality >= 0.5).astype(np.float64)
            colour = np.where(colour.max(axis=1, keepdims=True) > 0, _one_hot(colour), 0.0)
            presence = quality
        else:
            presence = quality * _ramp(feat["confidence"], PRESENCE_LOW, PRESENCE_HIGH)
            quality = quality * _ramp(feat["confidence"], CONFIDENCE_LOW, CONFIDENCE_HIGH)
        results.append(
            Detections(
                offsets=offsets,
                quality=quality,
                presence=presence,
                shape=shape,
                colour=colour,
                centre=np.stack([feat["cy"], feat["cx"]], axis=1),
                extent=np.stack([feat["height"], feat["width"]], axis=1),
            )
        )
    return results[0], results[1]


def _one_hot(scores: np.ndarray) -> np.ndarray:
    """One-hot [N, K] of the row-wise argmax of ``scores`` [N, K]."""
    return np.eye(scores.shape[1])[scores.argmax(axis=1)] if len(scores) else scores


def _relation(centre: np.ndarray, extent: np.ndarray, a: np.ndarray, b: np.ndarray, relation: str) -> np.ndarray:
    """GenEval's normalised offset of objects ``a`` relative to ``b`` along ``relation`` (> 0.5: holds).

    Args:
        centre: [N, 2] (y, x) centre per object.
        extent: [N, 2] (height, width) per object.
        a: int [K] first object of each of the K pairs.
        b: int [K] second object of each pair.
        relation: one of RELATIONS.

    Returns:
        [K]: the revised offset component in the relation's direction, divided by the offset's norm.
    """
    offset = centre[a] - centre[b]  # [K, 2]
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (extent[a] + extent[b]), 0) * np.sign(offset)
    normalised = revised / np.maximum(np.linalg.norm(offset, axis=1, keepdims=True), _EPS)  # [K, 2]
    axis, sign = {"left of": (1, -1), "right of": (1, 1), "above": (0, -1), "below": (0, 1)}[relation]
    return sign * normalised[:, axis]


def _clauses(spec: PromptSpec, det: Detections, image: int, *, hard: bool) -> list[float]:
    """Clause scores of one image for its prompt (see the module docstring)."""
    start, stop = det.offsets[image], det.offsets[image + 1]
    objects = det.quality[start:stop, None] * det.shape[start:stop]  # [n, S] soft object-is-shape scores
    counted = _ramp(det.presence[start:stop, None] * det.shape[start:stop], COUNTED_LOW, COUNTED_HIGH)  # [n, S]
    colours = det.colour[start:stop]  # [n, C]

    def presence(shape: str) -> float:
        column = objects[:, _SHAPE_INDEX[shape]]
        return float(column.max()) if len(column) else 0.0

    clauses: list[float] = []
    if spec.category == "counting":
        target = spec.objects[0]
        column = objects[:, _SHAPE_INDEX[target.shape]]  # [n] soft scores a[o, S]
        weight = counted[:, _SHAPE_INDEX[target.shape]]  # [n] how much each counts
        # the count as the strict rule sees it (a dim object is a whole one), times the mean soft score of the
        # n best objects: damage lowers exact and wrong counts alike, so it never reorders them, and a faint extra
        # object costs less than a solid one (hard scores: 1 - |n - k| / n, the partial clause)
        found = float(weight.sum())
        best = np.argsort(-column, kind="stable")[: target.count]  # the n highest soft scores
        mass = float(weight[best].sum())
        mean_score = float((weight[best] * column[best]).sum() / mass) if mass > 0 else 0.0
        return [max(0.0, 1.0 - abs(target.count - found) / target.count) * mean_score]
    for obj in spec.objects:
        clauses.append(presence(obj.shape))
        if obj.colour is not None:
            column = objects[:, _SHAPE_INDEX[obj.shape]] * colours[:, _COLOUR_INDEX[obj.colour]]
            clauses.append(float(column.max()) if len(column) else 0.0)
    if spec.relation is not None:
        clauses.append(_position(spec, det, start, stop, objects, counted, hard=hard))
    return clauses


def _position(
    spec: PromptSpec,
    det: Detections,
    start: int,
    stop: int,
    objects: np.ndarray,
    counted: np.ndarray,
    *,
    hard: bool,
) -> float:
    """Relation clause of a position prompt for the objects ``start:stop`` of one image.

    ``objects`` [n, S] are the soft object-is-shape scores, ``counted`` [n, S] how much each counts as that shape.
    """
    assert spec.relation is not None
    first, second = (objects[:, _SHAPE_INDEX[obj.shape]] for obj in spec.objects)  # [n], [n]
    a, b = np.nonzero(np.not_equal.outer(np.arange(stop - start), np.arange(stop - start)))  # distinct pairs
    weight = first[a] * second[b]  # [K]
    if weight.sum() <= 0:
        return 0.0
    value = _relation(det.centre[start:stop], det.extent[start:stop], a, b, spec.relation)  # [K]
    if hard:
        return float(np.all(value[weight > 0] > 0.5))
    # GenEval's rule holds only if every (A, B) pair satisfies the relation: a soft "for all" over the pairs,
    # each pair weighing by how much both of its objects count (a product, so one clear wrong pair gives 0)
    pair = counted[a, _SHAPE_INDEX[spec.objects[0].shape]] * counted[b, _SHAPE_INDEX[spec.objects[1].shape]]  # [K]
    satisfied = _ramp(value, RELATION_LOW, RELATION_HIGH)  # [K]
    return float(np.prod(1.0 - pair * (1.0 - satisfied)) * first.max() * second.max())


def _check_inputs(images: torch.Tensor, prompts: list[str]) -> np.ndarray:
    """Validate shapes and return float32 numpy [B, 3, H, W] clamped to [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor [B, 3, H, W], got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape [B, 3, H, W], got {list(images.shape)}")
    if len(prompts) != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} images but {len(prompts)} prompts; expected one prompt per image")
    array = images.detach().to("cpu", torch.float32).numpy()
    if not np.isfinite(array).all():
        raise ValueError("images contain NaN or infinite values")
    return np.clip(array, 0.0, 1.0)  # model samples overshoot [0, 1] slightly; clamp like a decoder would


def score_geneval(images: torch.Tensor, prompts: list[str]) -> GenEvalScores:
    """Score images against their prompts (see the module docstring for the definitions).

    Args:
        images: [B, 3, H, W] in [0, 1] (values outside are clamped), any float dtype and device.
        prompts: B prompts of :mod:`creditzoo.tasks.geneval`.

    Returns:
        GenEvalScores with float32 [B] tensors on ``images.device``.

    Raises:
        ValueError: on a wrong shape, a prompt count different from B, non-finite values or an unknown
            prompt.
    """
    array = _check_inputs(images, prompts)
    specs = [parse_prompt(prompt) for prompt in prompts]
    hard, soft = detect(array)
    strict = np.zeros(len(specs), dtype=np.float32)  # [B]
    partial = np.zeros(len(specs), dtype=np.float32)  # [B]
    dense = np.zeros(len(specs), dtype=np.float32)  # [B]
    owner = np.repeat(np.arange(len(specs)), np.diff(hard.offsets))  # [N] image of each component
    objects = np.bincount(owner, weights=hard.quality, minlength=len(specs)).astype(np.float32)  # [B] hard objects
    named = np.asarray([sum(obj.count for obj in spec.objects) for spec in specs], dtype=np.float32)  # [B]
    for image, spec in enumerate(specs):
        clauses = _clauses(spec, hard, image, hard=True)
        strict[image] = float(all(clause == 1.0 for clause in clauses))
        partial[image] = sum(clauses) / len(clauses)
        soft_clauses = _clauses(spec, soft, image, hard=False)
        dense[image] = sum(soft_clauses) / len(soft_clauses)
    device = images.device
    return GenEvalScores(
        strict=torch.from_numpy(strict).to(device),
        partial=torch.from_numpy(partial).to(device),
        dense=torch.from_numpy(dense).to(device),
        objects=torch.from_numpy(objects).to(device),
        extra_objects=torch.from_numpy((objects > named).astype(np.float32)).to(device),
    )


def strict_reward(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """GenEval correctness, 0/1 float32 [B]."""
    return score_geneval(images, prompts).strict


def partial_reward(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """Flow-GRPO's partial GenEval reward, float32 [B] in [0, 1]."""
    return score_geneval(images, prompts).partial


def dense_reward(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """Continuous GenEval reward, float32 [B] in [0, 1] (equals the partial reward on clean renders)."""
    return score_geneval(images, prompts).dense
