"""`creditzoo train`'s options are generated from TrainConfig's fields: one declaration per option."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from creditzoo.cli import app
from creditzoo.cli.options import config_options, with_parameters
from creditzoo.learner.config import OPTION_ALIASES, TrainConfig

runner = CliRunner()


def _listed_options(command: str) -> set[str]:
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return set(re.findall(r"^\s+(--[a-z-]+)", result.output, flags=re.MULTILINE))


def test_every_field_is_a_train_option_unless_marked() -> None:
    spelled = {field: option for option, field in OPTION_ALIASES.items()}
    fields = dataclasses.fields(TrainConfig)
    marked = {f.name for f in fields if f.metadata.get("option") is False}
    assert marked == {"model_options", "algo_options"}  # tables: set in the --config TOML file
    expected = {"--" + spelled.get(f.name, f.name).replace("_", "-") for f in fields if f.name not in marked}
    listed = _listed_options("train")
    assert expected <= listed
    assert listed - expected == {"--run-dir", "--config", "--resume", "--overwrite", "--help"}
    assert {"--num-steps", "--learning-rate", "--model-options", "--algo-options"}.isdisjoint(listed)
    # sweep takes every train option but the ones it replaces (--algo repeatable, --seeds, --out)
    assert expected - {"--seed"} <= _listed_options("sweep")


def test_help_text_and_defaults_come_from_the_fields() -> None:
    result = runner.invoke(app, ["train", "--help"], terminal_width=400)
    text = " ".join(result.output.split())
    for item in dataclasses.fields(TrainConfig):
        if item.metadata.get("option", True):
            shown = " ".join(item.metadata["help"].split())
            if item.metadata.get("show_default"):
                shown += f" [default: {item.default}]"
            assert shown in text, item.name
    assert "--gradient-checkpointing / --no-gradient-checkpointing" in text


@dataclass(frozen=True)
class WithMore(TrainConfig):
    """TrainConfig with fields the CLI module has never heard of."""

    made_up_count: int = field(default=1, metadata={"help": "score each image this many times"})
    fancy: bool = field(default=False, metadata={"help": "a made-up switch"})
    notes: tuple[str, ...] = field(default=(), metadata={"help": "made-up names, repeatable"})
    level: float | str = field(default=0.0, metadata={"help": "auto or a number"})
    table: dict[str, Any] = field(default_factory=dict, metadata={"help": "a made-up table", "option": False})


def test_a_new_field_becomes_an_option_with_no_cli_edit() -> None:
    seen: dict[str, Any] = {}

    def command(**options: Any) -> None:
        seen.update(options)

    extra = typer.Typer(rich_markup_mode=None, add_completion=False)
    extra.command()(with_parameters(command, config_options(WithMore)))
    shown = runner.invoke(extra, ["--help"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "--made-up-count <int>" in shown.output and "score each image this many times" in shown.output
    assert "--fancy / --no-fancy" in shown.output and "--table" not in shown.output
    assert "--level <str>" in shown.output  # float | str: text, which the configuration parses
    given = runner.invoke(extra, ["--made-up-count", "3", "--fancy", "--notes", "a", "--notes", "b", "--lr", "0.1"])
    assert given.exit_code == 0, given.output
    assert (seen["made_up_count"], seen["fancy"], seen["notes"], seen["lr"]) == (3, True, ["a", "b"], 0.1)
    assert seen["iterations"] is None  # not given: the TOML file and the task's defaults apply beneath it
    bad = runner.invoke(extra, ["--made-up-count", "two"])
    assert bad.exit_code == 2 and "--made-up-count" in bad.output


def test_a_field_without_help_or_an_option_type_is_a_developer_error() -> None:
    @dataclass(frozen=True)
    class Undocumented(TrainConfig):
        quiet: int = 0

    @dataclass(frozen=True)
    class Table(TrainConfig):
        table: dict[str, Any] = field(default_factory=dict, metadata={"help": "a table with no option marker"})

    with pytest.raises(TypeError, match="Undocumented.quiet has no metadata"):
        config_options(Undocumented)
    with pytest.raises(TypeError, match="option=False"):
        config_options(Table)
