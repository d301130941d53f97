"""`creditzoo train` end to end on a tiny task: bad input, run directory rules, same seed, resume."""

import json
import subprocess
import sys

import pytest
import torch
from tiny_model import TRAIN_ARGS
from typer.testing import CliRunner

import creditzoo.learner.run as run_module
from creditzoo.analysis import load_records, recompute
from creditzoo.cli import app
from creditzoo.learner.checkpoint import read_metrics

runner = CliRunner()
TINY = [*TRAIN_ARGS, *["--eval-every", "2", "--eval-samples-per-prompt", "1"]]


pytestmark = pytest.mark.usefixtures("tiny_task")


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
        (["--steps", "4", "--window-schedule", "slide:4:25:1"], "valid W: 1..3"),
        (["--window-schedule", "slide:2:0:1"], "W, TAU and S must each be >= 1"),
        (["--train-steps", "random:1.5"], "F in (0, 1]"),
        (["--step-weight", "sigma"], "valid: none, noise"),
        (["--algo", "branch_grpo", "--steps", "10", "--group-size", "8"], "group size must be 16"),
        (["--dtype", "float64"], "unknown dtype 'float64'; valid: float32, bfloat16, float16"),
        (["--model", "sdxl:/weights"], "unknown model 'sdxl:/weights'; valid forms: toy, toy:PATH, sd3:PATH"),
        (["--model", "sd3"], "model 'sd3' needs a path"),
        (["--model", "flux:/no/such/folder"], "model folder '/no/such/folder' does not exist"),
        (["--model", "toy", "--dtype", "bfloat16"], "the toy model runs in float32 only"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], message: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default --run-dir is runs/<algo>-<env>-seed<seed>, relative to here
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    # some are refused only after the run directory was locked (the model loads there): nothing may stay behind
    assert list(tmp_path.iterdir()) == []


def test_releasing_a_lock_removes_only_the_empty_folders_it_made(tmp_path) -> None:
    from creditzoo.learner.rundir import lock_run_dir

    (tmp_path / "kept").mkdir()
    with lock_run_dir(tmp_path / "kept" / "a" / "b" / "run"):
        assert (tmp_path / "kept" / "a" / "b" / "run" / ".lock").is_file()
    assert [path.name for path in tmp_path.rglob("*")] == ["kept"]  # a, b and run made for the lock: gone
    with lock_run_dir(tmp_path / "kept" / "a" / "one"):
        with lock_run_dir(tmp_path / "kept" / "a" / "two"):  # a sibling under the parent the first one made
            (tmp_path / "kept" / "a" / "two" / "metrics.jsonl").write_text("{}\n")
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")) == [
        "kept",
        "kept/a",
        "kept/a/two",
        "kept/a/two/metrics.jsonl",
    ]  # the written run and its parent stay; the empty run "one" is removed


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_resume_refuses_changed_options(tmp_path) -> None:
    assert invoke(*TINY, "--iterations", "1", "--run-dir", str(tmp_path / "run")).exit_code == 0
    result = invoke("--resume", str(tmp_path / "run"), "--seed", "4")
    assert result.exit_code == 2 and "only --iterations may change" in result.output
    result = invoke("--resume", str(tmp_path / "nothing"))
    assert result.exit_code == 2 and "nothing' does not exist" in result.output


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


@pytest.mark.slow
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
    assert json.loads(compared.stdout)["groups"][0]["to_threshold"]["iterations"]["ratio"] == 1.0
    replayed = recompute(records, "tp_grpo_strict")
    for record, credit in zip(records, replayed, strict=True):
        torch.testing.assert_close(credit.advantages, record.tensors["advantages"])
        assert torch.equal(credit.turning_points, record.tensors["turning_points"])


def test_environment_defaults_sit_under_the_config_file_and_the_options(tmp_path) -> None:
    from creditzoo.cli.train import resolve_config
    from creditzoo.tasks import get_task

    defaults = get_task("geneval").train_defaults
    config = resolve_config(None, {"env": "geneval"})
    assert config.learning_rate == defaults["learning_rate"]
    assert config.reward is None and get_task("geneval").default_reward == "geneval_dense"  # the task's default
    assert resolve_config(None, {"env": "geneval", "lr": 1e-4}).learning_rate == 1e-4
    toml = tmp_path / "c.toml"
    toml.write_text("learning_rate = 0.0005\n")
    assert resolve_config(toml, {"env": "geneval"}).learning_rate == 0.0005
    assert resolve_config(None, {"env": "tiny", "prompts_per_iteration": 2}).learning_rate == 3e-4  # library default


@pytest.mark.slow
def test_schedule_options_run_and_are_recorded(tmp_path) -> None:
    run = tmp_path / "run"
    options = ["--window-schedule", "slide:1:1:1", "--train-steps", "random:1", "--step-weight", "noise"]
    result = invoke(*TINY, *options, "--iterations", "2", "--run-dir", str(run))
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["window_schedule"] == "slide:1:1:1" and config["step_weight"] == "noise"
    records = load_records(run)
    assert [r.tensors["window_start"].tolist() for r in records] == [[0], [1]]  # T = 3: W = 1 slides 0 -> 1
    assert records[0].tensors["train_mask"].all() and records[0].tensors["step_weights"].tolist() == [1.0]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            'algo = "g2rpo"\n[algo_options]\ngranularities = [0, 2]\n',
            "granularities must be a non-empty list of integers >= 1",
        ),
        ('algo = "branch_grpo"\ngroup_size = 4\n[algo_options]\nsplit_steps = [0, 5]\n', "window steps in 0..1"),
    ],
)
def test_bad_algorithm_options_from_a_config_file(tmp_path, toml: str, message: str) -> None:
    config = tmp_path / "run.toml"
    config.write_text(toml)
    result = invoke(*TINY, "--config", str(config), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_algos_lists_shape_cost_and_paper() -> None:
    result = runner.invoke(app, ["algos"])
    assert result.exit_code == 0, result.output
    blocks: dict[str, list[str]] = {}  # a name line, then its indented description and (wrapped) cost
    for line in result.output.splitlines():
        if not line.startswith(" "):
            blocks[line.split()[0]] = [line, ""]
        else:
            block = blocks[list(blocks)[-1]]
            if line.strip().startswith("cost:") or block[1]:
                block[1] += " " + line.strip()
    by_name = {name: (head, cost.strip()) for name, (head, cost) in blocks.items()}
    assert set(by_name) >= {"flow_grpo", "tp_grpo", "dense_value", "tempflow", "g2rpo", "branch_grpo"}
    assert "chain" in by_name["flow_grpo"][0] and "arXiv 2505.05470" in by_name["flow_grpo"][0]
    assert by_name["flow_grpo"][1].split("cost:")[1].strip() == "0"
    assert "anchor" in by_name["tempflow"][0] and "arXiv 2508.04324" in by_name["tempflow"][0]
    assert "tree" in by_name["branch_grpo"][0] and "arXiv 2509.06040" in by_name["branch_grpo"][0]
    assert "T(T+1)/2-1" in by_name["tp_grpo"][1]


@pytest.mark.slow
def test_analyze_says_in_one_line_when_a_shape_cannot_be_replayed(tmp_path) -> None:
    run = tmp_path / "run"
    assert invoke(*TINY, "--iterations", "1", "--run-dir", str(run)).exit_code == 0
    result = runner.invoke(app, ["analyze", "robustness", str(run), "--algo", "tempflow"])
    assert result.exit_code == 2
    assert "error: algorithm 'tempflow' needs an anchor rollout, got a chain rollout" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_train_an_sd3_folder_from_the_command_line(tmp_path) -> None:
    """--model sd3:PATH end to end on a saved tiny pipeline; the checkpoint also holds diffusers' LoRA file."""
    from tiny_diffusers import tiny_sd3_pipeline

    tiny_sd3_pipeline().save_pretrained(tmp_path / "sd3")
    config = tmp_path / "run.toml"
    config.write_text("[model_options]\nresolution = 16\nmax_sequence_length = 16\n")
    args = [*TINY, "--model", f"sd3:{tmp_path / 'sd3'}", "--dtype", "float32", "--config", str(config)]
    args += ["--iterations", "1", "--eval-steps", "2", "--eval-min-images-per-category", "1", "--shift", "3"]
    args += ["--gradient-checkpointing", "--run-dir", str(tmp_path / "run")]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["model"].startswith("sd3:") and stored["gradient_checkpointing"] is True
    assert (tmp_path / "run" / "checkpoints" / "iter_000001" / "pytorch_lora_weights.safetensors").is_file()
    config.write_text("[model_options]\nresolution = 16\nsize = 3\n")
    result = invoke(*args[:-1], str(tmp_path / "other"))
    assert result.exit_code == 2 and "unknown option(s) size for sd3; valid: resolution" in result.output
