"""TrainConfig's fields as command-line options, each declared once: in the field (as TRL's HfArgumentParser).

``creditzoo train`` (and through it ``creditzoo sweep``) takes one option per :class:`TrainConfig` field:

- its name is the field's, dashed (``--prompts-per-iteration``), or its :data:`OPTION_ALIASES` spelling
  (``--steps`` for ``num_steps``, ``--lr`` for ``learning_rate``);
- its type is the field's type hint less ``None`` (text where the hint admits ``str`` among other types, e.g.
  ``reward_noise_sd: float | str``: the configuration parses it); a bool field is a ``--x/--no-x`` flag; a tuple
  of strings (``log``) is a repeatable option;
- its help is the field's ``metadata["help"]``, with ``[default: VALUE]`` appended where the metadata says
  ``show_default`` (the fields no task overrides: elsewhere the task's default applies, see
  ``TrainConfig.for_task``);
- a field whose metadata says ``option: False`` has no option (a table such as ``algo_options``: it is set in the
  ``--config`` TOML file).

Every option defaults to None, "not given", so that the TOML file and the task's defaults apply beneath it.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

import typer

from creditzoo.learner.config import OPTION_ALIASES, TrainConfig

FIELD_OPTIONS = {field: option for option, field in OPTION_ALIASES.items()}
"""TrainConfig field -> its command-line spelling, where the names differ (``num_steps`` -> ``steps``)."""
_KEYWORD = inspect.Parameter.KEYWORD_ONLY


def option_fields(config_class: type = TrainConfig) -> list[dataclasses.Field]:
    """The fields of ``config_class`` that are command-line options (all but those marked ``option: False``).

    Raises:
        TypeError: a field without ``metadata["help"]`` (a developer error: every option is documented).
    """
    fields = []
    for item in dataclasses.fields(config_class):
        if "help" not in item.metadata:
            raise TypeError(f"{config_class.__name__}.{item.name} has no metadata['help']; every field needs one")
        if item.metadata.get("option", True):
            fields.append(item)
    return fields


def option_parameter(field: str) -> str:
    """The parameter (and, dashed, the option) name of field ``field``: ``num_steps`` -> ``steps``."""
    return FIELD_OPTIONS.get(field, field)


def config_options(config_class: type = TrainConfig) -> list[inspect.Parameter]:
    """One keyword-only typer option parameter per option field of ``config_class``, in field order.

    Args:
        config_class: a dataclass whose fields carry ``metadata["help"]`` (TrainConfig or a subclass).

    Returns:
        ``inspect.Parameter`` s with a ``typer.Option(None, ...)`` default and the option's type as annotation.

    Raises:
        TypeError: a field without help, or of a type no option can hold (mark it ``option: False``).
    """
    hints = typing.get_type_hints(config_class)
    parameters = []
    for item in option_fields(config_class):
        kind = _option_type(config_class, item.name, hints[item.name])
        text = item.metadata["help"]
        if item.metadata.get("show_default"):
            text += f" [default: {item.default}]"
        name = option_parameter(item.name)
        flag = name.replace("_", "-")
        declarations = [f"--{flag}/--no-{flag}"] if kind is bool else []
        parameters.append(keyword_option(name, kind, typer.Option(None, *declarations, help=text)))
    return parameters


def keyword_option(name: str, kind: Any, option: Any) -> inspect.Parameter:
    """A command's own option (not a config field) as a keyword-only parameter: name, type, ``typer.Option``."""
    return inspect.Parameter(name, _KEYWORD, default=option, annotation=kind)


def with_parameters(function: Callable[..., Any], parameters: list[inspect.Parameter]) -> Callable[..., Any]:
    """Give ``function`` (which takes ``**options``) the signature typer builds its command from; returns it."""
    function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    function.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return function


def _option_type(config_class: type, name: str, hint: Any) -> Any:
    """The option type of a field's hint: ``int | None`` -> int, ``float | str`` -> str, ``tuple[str, ...]`` -> list."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kinds = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        hint = kinds[0] if len(kinds) == 1 else str if str in kinds else hint  # text: the config parses it
    if hint in (bool, int, float, str):
        return hint
    if typing.get_origin(hint) is tuple and typing.get_args(hint) == (str, ...):
        return list[str]
    raise TypeError(
        f"{config_class.__name__}.{name} has type {hint}, which no command-line option holds; "
        "give it metadata option=False (and set it in a --config TOML file)"
    )
