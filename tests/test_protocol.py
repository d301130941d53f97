"""The paired evaluation protocol in a run: eval/final.json and eval/base.json, protocol records, provenance."""

import json
from pathlib import Path

import pytest
from tiny_model import TRAIN_ARGS
from typer.testing import CliRunner

import creditzoo.learner.run as run_module
from creditzoo.cli import app
from creditzoo.learner.checkpoint import read_metrics

runner = CliRunner()
TINY = [*TRAIN_ARGS, "--iterations", "2", "--eval-every", "1", "--eval-steps", "2", "--eval-samples-per-prompt", "1"]
pytestmark = pytest.mark.usefixtures("tiny_task")


def train(run: Path, *args: str) -> str:
    result = runner.invoke(app, ["train", *TINY, *args, "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    return result.stdout


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_a_run_writes_paired_final_and_base_records(tmp_path: Path) -> None:
    said = train(tmp_path / "a", "--algo", "flow_grpo", "--seed", "1")
    train(tmp_path / "b", "--algo", "tp_grpo_strict", "--seed", "2", "--final-eval-steps", "3")
    final, base = load(tmp_path / "a" / "eval" / "final.json"), load(tmp_path / "a" / "eval" / "base.json")
    protocol = {
        "name": "final",
        "num_steps": 40,
        "samples_per_prompt": 4,
        "min_images_per_category": 32,
        "guidance_scale": 1.0,
        "shift": 1.0,
        "split": "test",
        "noise_table": "blake2b:tiny:0",
        "sampler": "ode",
    }  # fmt: skip  (the defaults: 40-step ODE, 4 samples per prompt; each tiny category has one prompt -> 32)
    for record, iteration, adapter in [(final, 2, "checkpoints/iter_000002"), (base, 0, None)]:
        assert list(record) == ["protocol", "task", "iteration", "adapter", "metrics", "summary", "images"]
        assert record["protocol"] == protocol and record["task"] == "tiny"
        assert (record["iteration"], record["adapter"]) == (iteration, adapter)
        assert record["metrics"] == ["partial_score", "strict_accuracy"]  # the tiny scorer has no extra_objects
        assert len(record["images"]) == 64 and "extra_object_rate" not in record["summary"]
        assert [(i["prompt_index"], i["sample_index"]) for i in record["images"][:2]] == [(0, 0), (0, 1)]
    assert (tmp_path / "a" / "checkpoints" / "iter_000002").is_dir()
    assert final["images"] != base["images"]  # the adapter was used for one and disabled for the other
    other = load(tmp_path / "b" / "eval" / "base.json")
    assert other["protocol"]["num_steps"] == 3
    lines = read_metrics(tmp_path / "a")
    assert lines[-1]["final_test_partial_score"] == final["summary"]["partial_score"]
    assert lines[-1]["final_test_strict_accuracy"] == final["summary"]["strict_accuracy"]
    assert lines[-1]["final_eval_protocol"] == protocol
    intermediate = {**protocol, "name": "intermediate", "num_steps": 2, "samples_per_prompt": 1}
    assert [line["eval_protocol"] for line in lines] == [intermediate] * 3
    assert load(tmp_path / "a" / "eval" / "iter_000001.json")["protocol"] == intermediate
    base_score, final_score = base["summary"]["partial_score"], final["summary"]["partial_score"]
    assert (
        "final evaluation (40-step ODE, 4 samples per test prompt, the base model on the same noise): "
        f"partial score {base_score:.4f} -> {final_score:.4f}, strict accuracy"
    ) in said  # the command's last line reports the paired final evaluation, not only the in-run one


@pytest.mark.slow
def test_base_records_of_two_runs_pair_image_by_image(tmp_path: Path) -> None:
    """Two runs of a task (other algorithm, other seed) evaluate their base model on identical noise."""
    args = ["--final-eval-steps", "3", "--final-eval-samples", "2"]
    train(tmp_path / "a", "--algo", "flow_grpo", "--seed", "1", *args)
    train(tmp_path / "b", "--algo", "incremental", "--seed", "5", *args)
    a, b = load(tmp_path / "a" / "eval" / "base.json"), load(tmp_path / "b" / "eval" / "base.json")
    assert a["images"] == b["images"] and a["summary"] == b["summary"]  # one process, same weights and noise
    finals = [load(tmp_path / name / "eval" / "final.json")["images"] for name in ("a", "b")]
    assert finals[0] != finals[1]


@pytest.mark.slow
def test_config_json_records_provenance_and_a_resume_appends(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(run)
    first = load(run / "config.json")["provenance"]
    assert first["resumes"] == [] and first["torch_threads"] >= 1 and first["device"] == "cpu"
    result = runner.invoke(app, ["train", "--resume", str(run), "--iterations", "3"])
    assert result.exit_code == 0, result.output
    stored = load(run / "config.json")
    assert stored["iterations"] == 3 and stored["provenance"]["started_utc"] == first["started_utc"]
    assert len(stored["provenance"]["resumes"]) == 1
    assert load(run / "eval" / "final.json")["iteration"] == 3


def test_a_finished_run_without_its_final_evaluation_gets_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(run, "--final-eval-steps", "3", "--final-eval-samples", "1")
    original = load(run / "eval" / "final.json")
    (run / "eval" / "final.json").unlink()
    (run / "eval" / "base.json").unlink()
    lines = read_metrics(run)
    for key in [k for k in lines[-1] if k.startswith("final_")]:
        del lines[-1][key]
    run_module.write_metrics(run, lines)
    result = runner.invoke(app, ["train", "--resume", str(run)])  # nothing to train, the final evaluation to do
    assert result.exit_code == 0, result.output
    again = load(run / "eval" / "final.json")
    # the in-run evaluation and this one sample the same checkpoint's weights on the same noise in batches of
    # the same composition in one process: equal up to float rounding of reloading the adapter (none expected)
    assert [i["sample_index"] for i in again["images"]] == [i["sample_index"] for i in original["images"]]
    assert again["summary"]["partial_score"] == pytest.approx(original["summary"]["partial_score"], abs=1e-6)
    assert read_metrics(run)[-1]["final_test_partial_score"] == again["summary"]["partial_score"]
    assert (run / "eval" / "base.json").exists()
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 2 and "nothing left to do" in result.output
    (run / "eval" / "final.json").unlink()
    result = runner.invoke(app, ["eval", "--run", str(run), "--final", "--json"])
    assert result.exit_code == 0, result.output
    assert load(run / "eval" / "final.json")["summary"] == again["summary"]


@pytest.mark.slow
def test_eval_records_and_bad_final_options(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(run, "--final-eval-steps", "2", "--final-eval-samples", "1", "--iterations", "1")
    common = ["eval", "--steps", "2", "--samples-per-prompt", "2", "--min-images-per-category", "0"]
    common += ["--out", str(tmp_path / "grid.png")]
    result = runner.invoke(app, [*common, "--run", str(run), "--records", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    record = load(tmp_path / "r.json")
    assert record["protocol"]["name"] == "cli" and record["protocol"]["noise_table"] == "blake2b:tiny:0"
    assert record["adapter"].endswith("iter_000001") and len(record["images"]) == 4
    result = runner.invoke(app, [*common, "--env", "tiny", "--final"])
    assert result.exit_code == 2 and "--final needs --run" in result.output and "Traceback" not in result.output
    train(tmp_path / "longer", "--iterations", "3", "--checkpoint-every", "1")
    lora = tmp_path / "longer" / "checkpoints" / "iter_000002"
    result = runner.invoke(app, ["eval", "--run", str(tmp_path / "longer"), "--lora", str(lora), "--final"])
    assert result.exit_code == 2 and "iteration 2 of 3" in result.output
    result = runner.invoke(app, ["train", *TINY, "--final-eval-samples", "0"])
    assert result.exit_code == 2 and "final_eval_samples must be >= 1" in result.output
