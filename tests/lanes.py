"""Test lanes: ``pytest -m "not slow"`` is the fast lane a developer runs while working; the full suite is CI's."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

SLOW = pytest.mark.slow


def first_fast(values: Iterable[object], *, several: bool = False) -> list[object]:
    """Parametrize values whose first case runs in the fast lane and the others only in the full suite.

    For a test repeated over every algorithm or backend: the fast lane keeps one case of the behaviour, the full
    suite (``.ci/run``) runs them all.

    Args:
        values: the cases, as ``pytest.mark.parametrize`` takes them.
        several: each case is a tuple of several arguments (a parametrize with several names).

    Returns:
        The same cases, every one after the first as a ``pytest.param`` marked ``slow``.
    """
    cases: list[object] = []
    for index, value in enumerate(values):
        if index == 0:
            cases.append(value)
        elif isinstance(value, type(pytest.param(None))):
            cases.append(pytest.param(*value.values, marks=[*value.marks, SLOW], id=value.id))
        else:
            cases.append(pytest.param(*(value if several else (value,)), marks=SLOW))
    return cases
