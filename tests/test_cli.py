"""`creditzoo train` end to end on a tiny task: bad input, run directory rules, same seed, resume."""

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import creditzoo.learner.run as run_module
from creditzoo.analysis import load_records, recompute
from creditzoo.cli import app
from creditzoo.learner.checkpoint import read_metrics
from creditzoo.tasks import TASKS

runner = CliRunner()
TINY = [
    "--env",
    "tiny",
    "--prompts-per-iteration",
    "2",
    "--group-size",
    "2",
    "--steps",
    "3",
    "--lora-rank",
    "2",
    "--eval-every",
    "2",
    "--eval-samples-per-prompt",
    "1",
    "--lr",
    "0.01",
    "--clip-range",
    "0.2",
]


@pytest.fixture(autouse=True)
def tiny_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TASKS, "tiny", "tiny_model:TASK")


def invoke(*args: str):
    return runner.invoke(app, ["train", *args])


def comparable(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algo", "grpo"], "unknown algorithm 'grpo'; valid: flow_grpo"),
        (["--env", "imagenet"], "unknown environment 'imagenet'; valid: geneval"),
        (["--group-size", "1"], "group_size must be >= 2"),
        (["--steps", "4", "--window", "5"], "does not fit in 4 steps"),
        (["--beta", "-0.1"], "beta must be >= 0"),
        (["--reward-noise", "gaussian:abc"], "malformed reward noise 'gaussian:abc'"),
        (["--completion", "ode:zero"], "malformed completion mode"),
        (["--sde", "ddpm"], "unknown sde_kind 'ddpm'; valid: flow_grpo, cps"),
        (["--std-mode", "batch"], "valid: group, global, none"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_option_from_the_console_script_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from creditzoo.cli import main; main()", "train", "--bogus", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "No such option: --bogus" in done.stderr


def test_unwritable_run_directory(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke(*TINY, "--iterations", "1", "--run-dir", str(blocker / "run"))
    assert result.exit_code == 2 and "not writable" in result.output


def test_existing_run_directory_is_never_overwritten_silently(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    result = invoke(*TINY, "--iterations", "1", "--run-dir", str(run))
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (run / "precious.txt").read_text() == "keep me"


def test_run_directory_contents_and_same_seed_same_metrics(tmp_path) -> None:
    for name in ("a", "b"):
        result = invoke(*TINY, "--iterations", "2", "--seed", "3", "--run-dir", str(tmp_path / name))
        assert result.exit_code == 0, result.output
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [line["iteration"] for line in a] == [0, 1, 2]
    assert comparable(a) == comparable(b)
    run = tmp_path / "a"
    config = json.loads((run / "config.json").read_text())
    assert config["env"] == "tiny" and config["seed"] == 3
    assert (run / "checkpoints" / "latest").read_text() == "iter_000002"
    assert (run / "checkpoints" / "iter_000002" / "adapter_model.safetensors").exists()
    assert (run / "eval" / "final.json").exists() and (run / "eval" / "final.png").exists()
    from safetensors import safe_open

    with safe_open(str(run / "rollouts" / "iter_000001.safetensors"), "pt") as record:
        assert {"completion_rewards", "completion_rewards_clean", "turning_points", "advantages"} <= set(record.keys())
        assert len(json.loads(record.metadata()["prompts"])) == 4
    assert "test_partial_score" in a[-1] and "tp_rate_per_step" in a[1]


def test_config_file_with_command_line_overrides(tmp_path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('algo = "incremental"\nseed = 5\niterations = 1\n')
    result = invoke(*TINY, "--config", str(config), "--seed", "6", "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["algo"] == "incremental" and stored["seed"] == 6
    config.write_text("learning_rat = 1\n")
    result = invoke("--config", str(config))
    assert result.exit_code == 2 and "unknown config key(s) learning_rat" in result.output


@pytest.mark.parametrize("crash_at", ["after_checkpoint", "before_checkpoint"])
def test_resume_after_a_crash_ends_with_the_same_metrics(tmp_path, monkeypatch, crash_at: str) -> None:
    args = [*TINY, "--iterations", "3", "--seed", "1"]
    assert invoke(*args, "--run-dir", str(tmp_path / "whole")).exit_code == 0
    original = run_module.save_checkpoint

    def crashing(run_dir, iteration, policy, state):
        if iteration == 2 and crash_at == "before_checkpoint":
            raise KeyboardInterrupt
        path = original(run_dir, iteration, policy, state)
        if iteration == 2:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(run_module, "save_checkpoint", crashing)
    interrupted = invoke(*args, "--run-dir", str(tmp_path / "cut"))
    assert interrupted.exit_code != 0
    monkeypatch.setattr(run_module, "save_checkpoint", original)
    resumed = invoke("--resume", str(tmp_path / "cut"))
    assert resumed.exit_code == 0, resumed.output
    assert comparable(read_metrics(tmp_path / "cut")) == comparable(read_metrics(tmp_path / "whole"))
    whole = torch.load(tmp_path / "whole" / "checkpoints" / "iter_000003" / "trainer_state.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoints" / "iter_000003" / "trainer_state.pt", weights_only=True)
    assert torch.equal(whole["optimizer"]["state"][0]["exp_avg"], cut["optimizer"]["state"][0]["exp_avg"])


def test_resume_refuses_changed_options(tmp_path) -> None:
    assert invoke(*TINY, "--iterations", "1", "--run-dir", str(tmp_path / "run")).exit_code == 0
    result = invoke("--resume", str(tmp_path / "run"), "--seed", "4")
    assert result.exit_code == 2 and "only --iterations may change" in result.output
    result = invoke("--resume", str(tmp_path / "nothing"))
    assert result.exit_code == 2 and "nothing to resume" in result.output


def test_non_finite_reward_stops_the_run_naming_prompt_and_iteration(tmp_path, monkeypatch) -> None:
    import tiny_model

    calls = {"n": 0}
    clean = tiny_model.brightness_reward

    def flaky(images, prompts):
        calls["n"] += 1
        values = clean(images, prompts)
        if calls["n"] >= 3:  # base eval does not call it; iterations 1 is fine, iteration 2 breaks
            values[1] = float("nan")
        return values

    monkeypatch.setattr(tiny_model, "brightness_reward", flaky)
    result = invoke(*TINY, "--iterations", "3", "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 1
    assert "non-finite reward" in result.output and "at iteration" in result.output and "prompt" in result.output
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()


def test_analyze_replays_algorithms_on_a_noisy_run(tmp_path) -> None:
    run = tmp_path / "run"
    args = [*TINY, "--iterations", "2", "--reward-noise", "gaussian:0.05", "--run-dir", str(run)]
    assert invoke(*args).exit_code == 0
    result = runner.invoke(app, ["analyze", "robustness", str(run), "--algo", "tp_grpo", "--repeats", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["iterations"] == 2
    tp = report["recorded_noisy_vs_clean"]["tp_grpo"]
    assert len(tp["tp_rate_noisy"]) == 2 and 0 <= tp["advantage_sign_agreement"] <= 1
    records = load_records(run)
    clean = records[0].tensors["completion_rewards_clean"]
    noisy = records[0].tensors["completion_rewards"]
    assert not torch.equal(clean, noisy)  # the noise was recorded beside the clean score
    assert runner.invoke(app, ["analyze", "robustness", str(tmp_path / "none")]).exit_code == 2
    turning = runner.invoke(app, ["analyze", "turning-points", f"{run}/", "--json"])
    assert turning.exit_code == 0, turning.output
    assert json.loads(turning.output)["recorded_matches_replay"] is True  # the run's own credit, replayed
    compared = runner.invoke(app, ["analyze", "compare", str(run), "--baseline", "tp_grpo_strict", "--json"])
    assert compared.exit_code == 0, compared.output
    assert json.loads(compared.output)["groups"][0]["to_threshold"]["iterations"]["ratio"] == 1.0
    replayed = recompute(records, "tp_grpo_strict")
    for record, credit in zip(records, replayed, strict=True):
        torch.testing.assert_close(credit.advantages, record.tensors["advantages"])
        assert torch.equal(credit.turning_points, record.tensors["turning_points"])


def test_environment_defaults_sit_under_the_config_file_and_the_options(tmp_path) -> None:
    from creditzoo.cli.train import resolve_config
    from creditzoo.tasks import get_task

    defaults = get_task("geneval").train_defaults
    config = resolve_config(None, {"env": "geneval"})
    assert config.learning_rate == defaults["learning_rate"] and config.reward == defaults["reward"]
    assert resolve_config(None, {"env": "geneval", "lr": 1e-4}).learning_rate == 1e-4
    toml = tmp_path / "c.toml"
    toml.write_text("learning_rate = 0.0005\n")
    assert resolve_config(toml, {"env": "geneval"}).learning_rate == 0.0005
    assert resolve_config(None, {"env": "tiny"}).learning_rate == 3e-4  # the library default
