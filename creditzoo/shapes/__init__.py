"""Rollout shapes: what a row of a batch is, as objects, in one table.

``SHAPES`` maps a shape's name to its :class:`~creditzoo.shapes.base.RolloutShape`, the one object that knows
everything that differs between shapes (docs/math.md sections 2, 9.3 and 9.4): its options and their
validation, how an episode is collected through the environment, the :class:`~creditzoo.rollout.Rollout` its
algorithms read (from a collected rollout, a stored record, or a small example), and the check of a Rollout's
fields. Callers look a shape up here (:func:`get_shape`) and call its methods; nothing else in the package
branches on a shape's name. Adding a shape is one file (its class) and one entry here.

- ``"chain"`` (:mod:`creditzoo.shapes.chain`): a row is one trajectory z_0 -> .. -> z_K.
- ``"anchor"`` (:mod:`creditzoo.shapes.anchor`): a row holds K children of one ODE anchor, one per window step.
- ``"tree"`` (:mod:`creditzoo.shapes.tree`): a row is one leaf of a prompt's binary tree of SDE paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from creditzoo.registry import lookup
from creditzoo.shapes.anchor import ANCHOR
from creditzoo.shapes.base import CollectedRollout, EpisodeOptions, RolloutFields, RolloutShape, check_tensor
from creditzoo.shapes.chain import CHAIN
from creditzoo.shapes.tree import TREE

if TYPE_CHECKING:
    from creditzoo.rollout import Rollout

SHAPES: dict[str, RolloutShape] = {
    "chain": CHAIN,
    "anchor": ANCHOR,
    "tree": TREE,
}

DEFAULT_SHAPE = "chain"
"""The shape of a Rollout, a collected rollout or a stored record that names none (chains came first)."""


def get_shape(name: str) -> RolloutShape:
    """The shape registered as ``name``.

    Raises:
        ValueError: ``unknown rollout shape '<name>'; valid: chain, anchor, tree``.
    """
    shape = lookup(name, SHAPES, "rollout shape", paths=False) if isinstance(name, str) else None
    if not isinstance(shape, RolloutShape):
        raise ValueError(f"unknown rollout shape {name!r}; valid: {', '.join(SHAPES)}")
    return shape


def shape_with_field(name: str) -> RolloutShape:
    """The shape a shape-specific Rollout field belongs to (e.g. ``completion_rewards``: chains).

    Raises:
        ValueError: no shape owns a field of that name (naming the fields that are owned).
    """
    for shape in SHAPES.values():
        if name in shape.fields:
            return shape
    owned = [field for shape in SHAPES.values() for field in shape.fields]
    raise ValueError(f"no rollout shape has a field {name!r}; shape-specific fields: {', '.join(owned)}")


def check_rollout_fields(rollout: Rollout) -> dict[str, Any]:
    """Check a Rollout's shape-specific fields: none of another shape's, and its own shape's as that shape says.

    Returns:
        The fields its shape infers from the others (e.g. ``num_steps``), for the Rollout to set.

    Raises:
        ValueError: an unknown shape (listing the valid ones), a field of another shape, or a malformed field.
    """
    shape = get_shape(rollout.shape)
    for other in SHAPES.values():
        for name in other.fields if other is not shape else ():
            if getattr(rollout, name) is not None:
                raise ValueError(f"{name} belong to {other.name} rollouts, not to {shape.name} rollouts")
    return shape.check_rollout(rollout)


__all__ = [
    "DEFAULT_SHAPE",
    "SHAPES",
    "CollectedRollout",
    "EpisodeOptions",
    "RolloutFields",
    "RolloutShape",
    "check_rollout_fields",
    "check_tensor",
    "get_shape",
    "shape_with_field",
]
