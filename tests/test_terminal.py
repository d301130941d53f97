"""What the commands print: per-iteration lines on a pipe, an ETA on a terminal, help and listings at 80 columns,
and user text printed literally (no rich markup, no :emoji: codes)."""

import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from rich.console import Console
from tiny_model import TRAIN_ARGS
from typer.testing import CliRunner

from creditzoo.cli import app
from creditzoo.cli.app import console, error_console
from creditzoo.cli.terminal import TrainProgress, duration

runner = CliRunner()
TESTS = Path(__file__).parent
LINE = re.compile(r"^iteration (\d+)/(\d+)  reward [\d.]+  tp [\d.]+(  test [\d.]+)?  elapsed (\S+)  eta (\S+)$")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def metrics(test: float | None = None) -> dict:
    line = {"reward_mean": 0.5, "tp_rate": 0.25}
    return line if test is None else {**line, "test_my_score": test, "test_other": 0.125}


def test_duration_format() -> None:
    assert [duration(s) for s in (0, 41.6, 187, 7500, float("inf"))] == ["0s", "42s", "3m07s", "2h05m", "?"]


def test_plain_progress_prints_one_line_per_iteration_with_elapsed_and_eta(capsys) -> None:
    clock = FakeClock()
    console = Console(file=io.StringIO())
    with TrainProgress("algo on env", 5, console=console, clock=clock, test_metric="test_my_score") as progress:
        clock.now += 30  # model loading and the base evaluation, then iteration 1
        progress.update(1, metrics())
        clock.now += 10
        progress.update(2, metrics(test=0.75))
        clock.now += 20
        progress.update(3, metrics())
    lines = capsys.readouterr().out.splitlines()
    # first report: 30 s so far, 4 left at 30 s each; then the mean since the first report: 10 s, then 15 s
    assert lines == [
        "iteration 1/5  reward 0.5000  tp 0.250  elapsed 30s  eta 2m00s",
        "iteration 2/5  reward 0.5000  tp 0.250  test 0.7500  elapsed 40s  eta 30s",
        "iteration 3/5  reward 0.5000  tp 0.250  elapsed 1m00s  eta 30s",
    ]


def test_progress_on_a_terminal_is_a_bar_with_an_eta_and_prints_the_description_literally() -> None:
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=140, markup=False, emoji=False)
    with TrainProgress("my:smile:algo on [red]env", 4, console=terminal, test_metric="test_my_score") as progress:
        time.sleep(0.05)
        progress.update(1, metrics())
        progress.update(2, metrics(test=0.5))
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # drop the terminal's control sequences
    last = text.splitlines()[-1]
    assert "my:smile:algo on [red]env" in last and "2/4" in last and "test 0.5000" in last
    assert re.search(r"eta \d+:\d\d:\d\d", last)


def test_disabled_progress_prints_nothing(capsys) -> None:
    with TrainProgress("a on b", 2, console=Console(file=io.StringIO()), enabled=False) as progress:
        progress.update(1, metrics())
    assert capsys.readouterr().out == ""


@pytest.mark.slow
def test_piped_training_prints_each_iteration_as_it_ends_and_the_run_dir_literally(tmp_path) -> None:
    run = tmp_path / "run:smile:x"
    command = [sys.executable, str(TESTS / "tiny_cli.py"), "train", *TRAIN_ARGS]
    command += ["--iterations", "2", "--eval-every", "2", "--eval-samples-per-prompt", "1", "--run-dir", str(run)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    first = process.stdout.readline()
    still_running = process.poll() is None  # iteration 2 and the final evaluation are still to come
    rest, errors = process.communicate(timeout=300)
    assert process.returncode == 0, errors
    lines = [first.rstrip("\n"), *rest.splitlines()]
    assert still_running, "the first iteration's line came only when the run ended"
    matches = [LINE.match(line) for line in lines[:2]]
    assert all(matches), lines
    assert [m.group(1) for m in matches] == ["1", "2"] and matches[1].group(3)  # evaluated at iteration 2
    assert matches[1].group(5) == "0s" and not matches[0].group(4).startswith("0:00")
    assert lines[2].startswith(f"done: {run}  test partial score")  # ':smile:' stays text, on one line
    assert lines[3].startswith("final evaluation (40-step ODE, 4 samples per test prompt")  # the paired one
    assert len(lines) == 4


def test_user_text_is_printed_literally(tiny_task) -> None:
    result = runner.invoke(app, ["train", *TRAIN_ARGS, "--reward-noise", "student_t:-1:1", "--run-dir", "x"])
    assert result.exit_code == 2
    assert "'student_t:-1:1'" in result.output and "\N{THUMBS DOWN SIGN}" not in result.output
    for shared in (console, error_console):
        with shared.capture() as captured:
            shared.print("run:smile:x [bold]y[/bold]")
        assert captured.get() == "run:smile:x [bold]y[/bold]\n"


def _commands(group: typer.core.TyperGroup, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


@pytest.mark.parametrize("path", [path for path, _ in _commands(typer.main.get_command(app))], ids=" ".join)
def test_help_at_80_columns_shows_every_option_name_whole(path: tuple[str, ...]) -> None:
    command = dict(_commands(typer.main.get_command(app)))[path]
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.output
    names = [opt for param in command.params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")]
    words = set(re.findall(r"--[\w-]+", result.output))
    assert [name for name in names if name not in words] == []


@pytest.mark.parametrize("command", ["algos", "envs"])
def test_listings_fit_80_columns_and_wide_keeps_one_line_each(command: str) -> None:
    narrow = runner.invoke(app, [command], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    assert max(len(line) for line in narrow.output.splitlines()) <= 80
    wide = runner.invoke(app, [command, "--wide"], env={"COLUMNS": "80"})
    assert wide.exit_code == 0, wide.output
    # the same words, none lost to the wrapping
    assert sorted(narrow.output.split()) == sorted(wide.output.split())
    assert max(len(line) for line in wide.output.splitlines()) > 100
