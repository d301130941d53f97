"""A sweep's grid: ``--grid option=v1,v2`` and ``--seeds`` parsed into the runs (algorithms x grid points x seeds).

Grid keys are TrainConfig field names; the command line also takes the ``creditzoo train`` spellings
(``--grid lr=...``, ``--grid window=...``, see :data:`~creditzoo.learner.config.OPTION_ALIASES`).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import typing
from collections.abc import Callable, Sequence
from typing import Any

from creditzoo.learner.config import OPTION_ALIASES, TrainConfig
from creditzoo.sweep.manifest import SweepError, SweepRun

SWEPT_ELSEWHERE = {"algo": "--algo", "seed": "--seeds"}
"""Fields a grid may not take, with the option that sweeps them instead."""
NOT_GRIDDABLE = ("algo_options", "device", "log")
"""Fields that are not a training choice one compares (or have no single-value spelling)."""
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]")


def grid_field(option: str) -> str:
    """The TrainConfig field a grid option names (``lr`` -> ``learning_rate``, ``noise-level`` -> ``noise_level``).

    Raises:
        SweepError: for an option that is not a griddable field, listing the valid ones.
    """
    name = option.strip().replace("-", "_")
    name = OPTION_ALIASES.get(name, name)
    if name in SWEPT_ELSEWHERE:
        raise SweepError(f"--grid cannot take {option!r}; sweep it with {SWEPT_ELSEWHERE[name]}")
    if name not in _field_types() or name in NOT_GRIDDABLE:
        raise SweepError(f"unknown grid option {option!r}; valid: {', '.join(griddable_options())}")
    return name


def griddable_options() -> list[str]:
    """Every option ``--grid`` takes: field names and the ``creditzoo train`` spellings, sorted."""
    fields = [name for name in _field_types() if name not in NOT_GRIDDABLE and name not in SWEPT_ELSEWHERE]
    return sorted(set(fields) | set(OPTION_ALIASES))


def parse_grid_value(field: str, text: str) -> Any:
    """Parse one grid value to the type of TrainConfig field ``field`` ("none" gives None where allowed).

    Raises:
        SweepError: when the text does not parse as the field's type.
    """
    kinds = _field_types()[field]
    text = text.strip()
    if text.lower() == "none" and type(None) in kinds:
        return None
    for kind in kinds:
        if kind is int:
            try:
                return int(text)
            except ValueError:
                continue
        if kind is float:
            try:
                return float(text)
            except ValueError:
                continue
        if kind is str and text:
            return text
    names = " or ".join("none" if kind is type(None) else kind.__name__ for kind in kinds)
    raise SweepError(f"grid value {text!r} for {field} is not {names}")


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """Parse ``--grid option=v1,v2`` specs into {field: [values]} (fields in the order given).

    Raises:
        SweepError: for a malformed spec, an unknown option, a repeated option or value, or a bad value.
    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        option, sep, values = spec.partition("=")
        if not sep or not option.strip() or not values.strip():
            raise SweepError(f"malformed --grid {spec!r}; expected option=value1,value2,...")
        field = grid_field(option)
        if field in grid:
            raise SweepError(f"--grid gives {field} twice")
        parsed = [parse_grid_value(field, value) for value in values.split(",")]
        if len(set(map(repr, parsed))) != len(parsed):
            raise SweepError(f"--grid {spec!r} repeats a value")
        grid[field] = parsed
    return grid


def parse_seeds(text: str) -> list[int]:
    """Parse ``--seeds 0,1,2`` (or a range ``0-4``) into distinct ints.

    Raises:
        SweepError: when the text is not a comma-separated list of non-negative integers or ``a-b``.
    """
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise SweepError(f"malformed --seeds {text!r}; expected e.g. 0,1,2 or 0-4")
        seeds += list(range(int(low), int(high) + 1)) if dash else [int(low)]
    if not seeds or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds {text!r} is empty or repeats a seed")
    return seeds


def run_name(algo: str, values: dict[str, Any], seed: int) -> str:
    """The run's name and directory: ``algo[-field=value...]-seedN`` with unsafe characters made ``_``."""
    parts = [algo, *(f"{field}={value}" for field, value in values.items()), f"seed{seed}"]
    return _UNSAFE.sub("_", "-".join(parts))


def expand(
    algos: Sequence[str],
    seeds: Sequence[int],
    grid: dict[str, list[Any]],
    make_config: Callable[[dict[str, Any]], TrainConfig],
) -> list[SweepRun]:
    """Every (algo, grid point, seed) as a run, algorithm-major, seed fastest.

    Args:
        algos: algorithms, in order.
        seeds: seeds, in order.
        grid: {field: [values]}.
        make_config: builds the resolved config from the varying fields ({"algo", "seed", grid fields});
            the caller puts the fixed options and defaults in.

    Raises:
        SweepError: when two runs would get the same name or no algorithm is given.
    """
    if not algos:
        raise SweepError("a sweep needs at least one --algo")
    if len(set(algos)) != len(algos):
        raise SweepError(f"--algo repeats an algorithm: {', '.join(algos)}")
    runs = []
    for algo in algos:
        for point in itertools.product(*grid.values()):
            values = dict(zip(grid, point, strict=True))
            for seed in seeds:
                config = make_config({**values, "algo": algo, "seed": seed})
                runs.append(SweepRun(name=run_name(algo, values, seed), algo=algo, seed=seed, config=config))
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise SweepError(f"two runs of the grid would share the directory {duplicate!r}; use distinct values")
    return runs


# ---------------------------------------------------------------------------------------- the manifest


def _field_types() -> dict[str, tuple[type, ...]]:
    """TrainConfig field -> the types its values may have (e.g. ``int | None`` -> (int, NoneType))."""
    hints = typing.get_type_hints(TrainConfig)
    types: dict[str, tuple[type, ...]] = {}
    for field in dataclasses.fields(TrainConfig):
        hint = hints[field.name]
        args = typing.get_args(hint)
        types[field.name] = tuple(a for a in args if isinstance(a, type)) if args else (hint,)
        if typing.get_origin(hint) in (dict, list, tuple):
            types[field.name] = (typing.get_origin(hint),)
    return types
