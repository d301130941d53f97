"""Issue 14: bad input is refused before anything is written, in one line that names it and cuts long values.

One test (or one parametrized family) per defect: validation before writing (4), config types (6), read-only
and odd paths (7), defaults that run, the memory estimate (3), the README import (11) and echoed inputs (10).
Every test here fails on the code before this change (run against main 2b04be9 before the fix).

Tests run as root on this project's machines, and root ignores permission bits, so a chmod-ed directory is
still writable for root: read-only-ness is shown three ways. (a) Paths under a regular file (``file/run``) fail
for every user, root included: a real OS refusal. (b) A directory the write probe reports as read-only
(``preflight.probe_write`` replaced for the test): this shows that every command checks before any work and
says so in one line, not that the OS detection works. (c) chmod 0555 directories, for a non-root run of the
suite only (skipped as root).
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import peft  # noqa: F401  (transformers' log handler binds to the real stderr, not to a CliRunner's stream)
import pytest
from lanes import first_fast
from synthetic_runs import write_run
from tiny_model import TRAIN_ARGS
from typer.testing import CliRunner

from creditzoo.algorithms import ALGORITHMS
from creditzoo.cli import app
from creditzoo.learner.config import TrainConfig

runner = CliRunner()
TINY = [*TRAIN_ARGS, "--eval-steps", "2", "--eval-min-images-per-category", "1", "--eval-samples-per-prompt", "1"]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

pytestmark = pytest.mark.usefixtures("tiny_task")


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (empty when it does not exist)."""
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def one_line_error(result, *needles: str) -> str:
    """The single error line of a failed command: exit code 2, no traceback, every needle in it."""
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text and text.count("\n") == 0, text
    for needle in needles:
        assert needle in text, text
    return text


def previous_run(path: Path) -> dict[str, str]:
    """A finished run directory (config, metrics, rollouts, evaluation) and its file hashes."""
    write_run(path, env="tiny", prompts_per_iteration=2, group_size=2)
    (path / "checkpoints" / "iter_000001").mkdir(parents=True)
    (path / "checkpoints" / "iter_000001" / "adapter_model.safetensors").write_bytes(b"weights")
    return snapshot(path)


# ------------------------------------------------------------------------------ defect 4: validate before writing


def _prompt_files(tmp_path: Path, train: str, test: str) -> str:
    (tmp_path / "train.txt").write_text(train + "\na red circle\n")
    (tmp_path / "test.txt").write_text(test + "\n")
    return f"{tmp_path / 'train.txt'},{tmp_path / 'test.txt'}"


BAD_INPUTS = {
    # the toy model's tokenizer refuses these; the tiny model has none, so these runs name --model toy
    "10,000-character prompt": (
        lambda tmp: ["--model", "toy", "--prompts", _prompt_files(tmp, "a red circle " * 800, "a blue circle")],
        "more than max_tokens=16",
    ),
    "word outside the vocabulary": (
        lambda tmp: ["--model", "toy", "--prompts", _prompt_files(tmp, "a red circle", "a red xylophone")],
        "words not in the model's vocabulary: ['xylophone']",
    ),
    "negative seed": (lambda tmp: ["--seed", "-1"], "seed must be in 0..4294967295, got -1"),
    "infinite learning rate": (lambda tmp: ["--lr", "inf"], "learning_rate must be a finite number > 0, got inf"),
    "NaN LoRA alpha": (lambda tmp: ["--lora-alpha", "nan"], "lora_alpha must be a finite number > 0, got nan"),
    "infinite noise level": (lambda tmp: ["--noise-level", "inf"], "noise_level must be a finite number >= 0"),
    "TOML float for an integer": (
        lambda tmp: ["--config", str(_write(tmp / "c.toml", "iterations = 2.0\n"))],
        "iterations must be an integer, got 2.0 (float)",
    ),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_writes_nothing_and_overwrite_keeps_the_previous_run(tmp_path, case: str) -> None:
    make_args, message = BAD_INPUTS[case]
    args = make_args(tmp_path)
    fresh = tmp_path / "fresh"
    one_line_error(runner.invoke(app, ["train", *TINY, "--iterations", "1", *args, "--run-dir", str(fresh)]), message)
    assert not fresh.exists()  # the corrected rerun is not refused with "already exists"
    old = tmp_path / "old"
    before = previous_run(old)
    result = runner.invoke(app, ["train", *TINY, "--iterations", "1", *args, "--run-dir", str(old), "--overwrite"])
    one_line_error(result, message)
    assert snapshot(old) == before  # --overwrite removes the old run only once the new one is known to start


# ------------------------------------------------------------------------------------- defect 6: config types


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("iterations = true", "iterations must be an integer, got True (bool)"),
        ('iterations = "ten"', "iterations must be an integer, got 'ten' (str)"),
        ("iterations = 1.5", "iterations must be an integer, got 1.5 (float)"),
        ("iterations = 2.0", "iterations must be an integer, got 2.0 (float)"),
        ('learning_rate = "fast"', "learning_rate must be a number, got 'fast' (str)"),
        ("gradient_checkpointing = 1", "gradient_checkpointing must be true or false, got 1 (int)"),
        ('algo = ["flow_grpo"]', "algo must be a string, got ['flow_grpo'] (list)"),
    ],
)
def test_config_file_types_are_one_line_naming_file_and_key(tmp_path, toml: str, message: str) -> None:
    config = _write(tmp_path / "bad.toml", f'env = "tiny"\n{toml}\n')
    run = tmp_path / "run"
    one_line_error(runner.invoke(app, ["train", "--config", str(config), "--run-dir", str(run)]), message, "bad.toml")
    assert not run.exists()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"iterations": True}, "iterations must be an integer, got True (bool)"),
        ({"iterations": "ten"}, "iterations must be an integer, got 'ten' (str)"),
        ({"iterations": 2.0}, "iterations must be an integer, got 2.0 (float)"),
        ({"group_size": 1.5}, "group_size must be an integer, got 1.5 (float)"),
        ({"beta": "0"}, "beta must be a number, got '0' (str)"),
    ],
)
def test_python_api_refuses_wrong_types_naming_the_field(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        TrainConfig(env="tiny", **values)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        TrainConfig.for_task("tiny", **values)


def test_integer_like_numbers_are_accepted_and_stored_as_python_numbers() -> None:
    """numpy integers (a sweep script's np.arange) are integers; an int where a float is due is a float."""
    import json

    import numpy as np

    config = TrainConfig(env="tiny", iterations=np.int64(3), prompts_per_iteration=2, learning_rate=1)
    assert config.iterations == 3 and type(config.iterations) is int
    assert config.learning_rate == 1.0 and type(config.learning_rate) is float
    json.dumps(config.to_dict())  # would raise on a numpy scalar


def test_config_path_that_is_a_directory_or_binary_is_one_line(tmp_path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    one_line_error(runner.invoke(app, ["train", "--config", str(folder)]), "config file", "configs", "is a directory")
    binary = tmp_path / "weights.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    one_line_error(runner.invoke(app, ["train", "--config", str(binary)]), "weights.bin", "not UTF-8 text")


# ----------------------------------------------------------------------------- defect 7: read-only and odd paths


@pytest.fixture
def read_only(monkeypatch):
    """Make ``preflight.probe_write`` report EROFS for every directory under the paths added to the returned list."""
    import creditzoo.learner.preflight as preflight

    roots: list[Path] = []
    original = preflight.probe_write

    def probe(directory: Path) -> None:
        if any(Path(directory).resolve().is_relative_to(root.resolve()) for root in roots):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        original(directory)

    monkeypatch.setattr(preflight, "probe_write", probe)
    return roots


def _no_work(monkeypatch, module: str, name: str) -> None:
    """Make ``module.name`` fail the test if called: the command must stop before that work."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"{name} ran before the output path was checked")

    monkeypatch.setattr(f"{module}.{name}", forbidden)


def test_eval_grid_under_a_file_stops_before_evaluating(tmp_path, monkeypatch) -> None:
    _no_work(monkeypatch, "creditzoo.learner.evaluate", "evaluate")
    blocker = _write(tmp_path / "file", "x")
    result = runner.invoke(app, ["eval", "--env", "tiny", "--out", str(blocker / "grid.png")])
    one_line_error(result, "not writable", "file")
    folder = tmp_path / "folder"
    folder.mkdir()
    one_line_error(runner.invoke(app, ["eval", "--env", "tiny", "--out", str(folder)]), "is a directory")
    one_line_error(runner.invoke(app, ["eval", "--env", "tiny", "--out", str(tmp_path / "grid.xyz")]), ".xyz", ".png")


def test_eval_grid_in_a_read_only_directory_stops_before_evaluating(tmp_path, monkeypatch, read_only) -> None:
    _no_work(monkeypatch, "creditzoo.learner.evaluate", "evaluate")
    read_only.append(tmp_path)
    result = runner.invoke(app, ["eval", "--env", "tiny", "--out", str(tmp_path / "grid.png")])
    one_line_error(result, "not writable", "Read-only file system")


def test_sweep_out_under_a_file_or_read_only_is_one_line(tmp_path, read_only) -> None:
    blocker = _write(tmp_path / "file", "x")
    args = ["sweep", "--algo", "flow_grpo", *TINY, "--iterations", "1"]
    one_line_error(runner.invoke(app, [*args, "--out", str(blocker / "sweep")]), "not writable")
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only.append(locked)
    one_line_error(runner.invoke(app, [*args, "--out", str(locked / "sweep")]), "not writable", "Read-only")
    assert list(locked.iterdir()) == []


def test_resume_of_a_read_only_run_is_one_line_and_changes_nothing(tmp_path, monkeypatch, read_only) -> None:
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", *TINY, "--iterations", "1", "--run-dir", str(run)]).exit_code == 0
    before = snapshot(run)
    read_only.append(run)
    _no_work(monkeypatch, "creditzoo.learner.run", "load_model")
    result = runner.invoke(app, ["train", "--resume", str(run), "--iterations", "2"])
    one_line_error(result, "run directory", "not writable", "Read-only")
    assert snapshot(run) == before


@pytest.mark.parametrize("command", ["turning-points", "robustness", "compare"])
def test_analysis_into_a_read_only_run_stops_before_the_analysis(tmp_path, monkeypatch, read_only, command) -> None:
    run = write_run(tmp_path / "run", reward_noise="gaussian:0.1")
    before = snapshot(run)
    read_only.append(run)
    for module, name in [
        ("creditzoo.analysis.turning_points", "turning_point_report"),
        ("creditzoo.analysis.robustness", "counterfactual_study"),
        ("creditzoo.analysis.compare", "compare_runs"),
    ]:
        _no_work(monkeypatch, module, name)
    one_line_error(runner.invoke(app, ["analyze", command, str(run)]), "not writable", "Read-only")
    assert snapshot(run) == before
    blocker = _write(tmp_path / "file", "x")
    one_line_error(runner.invoke(app, ["analyze", command, str(run), "--out", str(blocker / "out")]), "not writable")


def test_analysis_of_a_missing_run_still_names_the_missing_run(tmp_path) -> None:
    """The writable check comes after the cheap input checks: a missing input is reported as missing."""
    result = runner.invoke(app, ["analyze", "turning-points", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "not writable" not in result.output


@pytest.mark.skipif(AS_ROOT or not hasattr(os, "geteuid"), reason="root writes into 0555 directories")
def test_read_only_directories_by_permission_bits(tmp_path) -> None:
    """The real OS check (not the injected probe), where permission bits bind: a non-root run of the suite."""
    run = write_run(tmp_path / "run")
    out = tmp_path / "out"
    out.mkdir()
    for path in (run, out):
        path.chmod(0o555)
    try:
        one_line_error(runner.invoke(app, ["analyze", "turning-points", str(run)]), "not writable")
        one_line_error(runner.invoke(app, ["eval", "--env", "tiny", "--out", str(out / "g.png")]), "not writable")
    finally:
        for path in (run, out):
            path.chmod(0o755)


# ---------------------------------------------------------------------------------------- defaults that run


def test_tree_algorithms_take_their_group_size_when_none_is_given(monkeypatch) -> None:
    from creditzoo.algorithms import default_split_steps
    from creditzoo.tasks import TASKS, get_task

    leaves = 2 ** len(default_split_steps(9))  # T = 10 steps, window K = 9 -> 4 splits -> 16 leaves
    assert leaves == 16
    assert TrainConfig.for_task("geneval", algo="branch_grpo").group_size == leaves
    assert TrainConfig(algo="branch_grpo").group_size == leaves
    assert TrainConfig.for_task("geneval", algo="flow_grpo").group_size == 8
    with pytest.raises(ValueError, match="group size must be 16, got 8"):
        TrainConfig.for_task("geneval", algo="branch_grpo", group_size=8)  # given: stays an error
    # a task default for the group size applies to chains; a tree keeps its leaves unless the user gives one
    import dataclasses

    import tiny_model

    monkeypatch.setattr(
        tiny_model, "TASK4", dataclasses.replace(get_task("tiny"), train_defaults={"group_size": 4}), raising=False
    )
    monkeypatch.setitem(TASKS, "tiny4", "tiny_model:TASK4")
    assert TrainConfig.for_task("tiny4", algo="flow_grpo", prompts_per_iteration=2).group_size == 4
    tree = TrainConfig.for_task("tiny4", algo="branch_grpo", prompts_per_iteration=2, num_steps=4)
    assert tree.group_size == 2 ** len(default_split_steps(3))


def test_geneval_plain_command_of_every_algorithm_resolves() -> None:
    """``creditzoo train --algo NAME --env geneval`` builds a valid configuration for every algorithm."""
    from creditzoo.algorithms import ALGORITHMS

    for name in ALGORITHMS:
        config = TrainConfig.for_task("geneval", algo=name)
        assert config.batch_size >= config.prompts_per_iteration * 2


@pytest.mark.parametrize("algo", first_fast(ALGORITHMS))
def test_every_algorithm_trains_one_iteration_without_a_group_size(tmp_path, algo: str) -> None:
    """The plain command on the tiny task, for every algorithm of ``creditzoo algos``: no --group-size."""
    args = ["--env", "tiny", "--prompts-per-iteration", "2", "--steps", "3", "--lora-rank", "2", "--iterations", "1"]
    args += ["--eval-steps", "2", "--eval-min-images-per-category", "1", "--eval-samples-per-prompt", "1"]
    result = runner.invoke(app, ["train", "--algo", algo, *args, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------------- defect 3: memory estimate


def test_memory_estimate_counts_the_rollout_latents() -> None:
    """Known by construction: a chain keeps B x (K + 1) states of the model's sample shape, float32 (and as many
    completed latents when the algorithm needs completions); trees and anchors an input and output per step."""
    from tiny_model import TinyFlowModel

    from creditzoo.learner.preflight import estimate_memory

    latent = 3 * 8 * 8 * 4  # bytes of one [3, 8, 8] float32 latent
    shape = {"env": "tiny", "prompts_per_iteration": 2, "group_size": 5, "num_steps": 4, "updates_per_iteration": 2}
    final_only = estimate_memory(TrainConfig(algo="flow_grpo", **shape), TinyFlowModel())
    assert final_only.rollout_bytes == (2 * 5) * (3 + 1) * latent  # B=10, K=3 -> 4 states
    assert final_only.update_bytes == 5 * 2 * latent  # a minibatch of 5 rows: input and output latents
    completions = estimate_memory(TrainConfig(algo="tp_grpo_strict", **shape), TinyFlowModel())
    assert completions.rollout_bytes == 2 * final_only.rollout_bytes
    tree = TrainConfig(env="tiny", algo="branch_grpo", prompts_per_iteration=2, num_steps=4)  # K=3: 4 leaves
    assert tree.group_size == 4
    assert estimate_memory(tree, TinyFlowModel()).rollout_bytes == (2 * 4) * 3 * 2 * latent  # in + out


def test_a_batch_that_cannot_fit_is_refused_before_writing(tmp_path, monkeypatch) -> None:
    import creditzoo.learner.preflight as preflight

    monkeypatch.setattr(preflight, "available_memory", lambda device: 1000)  # the tiny run needs ~20 kB
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--iterations", "1", "--run-dir", str(run)])
    one_line_error(result, "needs at least", "available", "--group-size")
    assert not run.exists()


def test_group_size_100000_on_geneval_is_refused_by_the_estimate() -> None:
    """The issue's --group-size 100000: 8 x 100000 x 10 states of 3x32x32 float32 (and their completions)."""
    import torch

    from creditzoo.learner.preflight import check_memory, estimate_memory
    from creditzoo.models import load_model

    config = TrainConfig.for_task("geneval", group_size=100_000)
    model = load_model("toy", device=torch.device("cpu"))
    assert config.algo == "tp_grpo_strict"  # needs completions: 20 latents per trajectory
    assert estimate_memory(config, model).total_bytes == 800_000 * 20 * 3072 * 4 + 400_000 * 2 * 3072 * 4
    with pytest.raises(ValueError, match="needs at least 206.4 GB"):
        check_memory(config, model, torch.device("cpu"), available=64 << 30)


# ------------------------------------------------------------------------------- defect 11: the README's import


def test_the_readme_import_works() -> None:
    from creditzoo.learner import GRPOLearner, TrainConfig, grpo, run, train
    from creditzoo.learner import config as config_module

    assert TrainConfig is config_module.TrainConfig and train is run.train and GRPOLearner is grpo.GRPOLearner
    with pytest.raises(ImportError):
        exec("from creditzoo.learner import NoSuchThing")


# ------------------------------------------------------------------------ defect 10 (part): echoed inputs are cut


@pytest.mark.parametrize(
    "args",
    [
        ["--reward-noise", "gaussian:" + "9" * 20_000],
        ["--model", "sdxl:" + "x" * 20_000],
        ["--algo", "g" * 20_000],
        ["--device", "tpu" * 5_000],
    ],
)
def test_error_lines_cut_long_inputs(tmp_path, args: list[str]) -> None:
    line = one_line_error(runner.invoke(app, ["train", *TINY, *args, "--run-dir", str(tmp_path / "r")]))
    assert len(line) < 400 and "…" in line, line[:500]


def test_a_10000_character_prompt_is_cut_in_the_error(tmp_path) -> None:
    files = _prompt_files(tmp_path, "a red circle " * 800, "a blue circle")
    result = runner.invoke(
        app, ["train", *TINY, "--model", "toy", "--prompts", files, "--run-dir", str(tmp_path / "r")]
    )
    line = one_line_error(result, "more than max_tokens=16")
    assert len(line) < 400 and "…" in line


def test_shown_keeps_the_start_and_the_end_of_a_long_value() -> None:
    from creditzoo.messages import SHOWN_CHARS, cut_long_values, shown

    path = "/data/" + "x" * 500 + "/run-name"
    text = shown(path)
    assert text.startswith("'/data/xx") and text.endswith("/run-name' (515 characters)")
    assert len(text) < SHOWN_CHARS + 30
    assert shown("a red circle") == "'a red circle'"  # short values are whole
    line = cut_long_values(f"run directory {path!r} is not writable; valid: a, b\nsecond line")
    assert line.endswith("/run-name' (515 characters) is not writable; valid: a, b") and "\n" not in line
