"""The one way creditzoo looks a name up: in a readable dict-literal table, or as ``"package.module:attribute"``.

Every table of contents (algorithms, tasks and the rewards inside each task) resolves names through
:func:`lookup`, so an unknown name always fails the same way: one line naming it and listing the valid choices.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def load_object(path: str) -> object:
    """Import ``"package.module:attribute"`` and return the attribute.

    Raises:
        ValueError: a malformed path, a module that cannot be imported or a missing attribute.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected 'package.module:attribute', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import module {module_name!r} from {path!r}: {error}") from error
    if not hasattr(module, attribute):
        raise ValueError(f"module {module_name!r} has no attribute {attribute!r}")
    return getattr(module, attribute)


def lookup(name: str, table: Mapping[str, T], kind: str, *, paths: bool = True) -> T | object:
    """Resolve ``name`` in ``table``, or (with ``paths``) load it from a ``"package.module:attribute"`` path.

    A table value that is itself a path string is loaded; any other value is returned as it is.

    Args:
        name: a key of ``table`` or, with ``paths``, an import path.
        table: the registry, e.g. ``ALGORITHMS``.
        kind: what is looked up ("algorithm", "environment", ...), for the error message.
        paths: whether ``"package.module:attribute"`` names are accepted.

    Raises:
        ValueError: ``unknown <kind> '<name>'; valid: <keys>`` (plus the path form where accepted).
    """
    if name in table:
        value = table[name]
        return load_object(value) if isinstance(value, str) and ":" in value else value
    if paths and ":" in name:
        return load_object(name)
    hint = " (or 'package.module:attribute')" if paths else ""
    raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(table)}{hint}")
