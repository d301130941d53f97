"""A task declares its metrics (Task.metrics, Task.primary_metric); evaluation, runs, the CLI and compare read them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from tiny_model import TRAIN_ARGS, TinyFlowModel, brightness_reward, make_task
from typer.testing import CliRunner

from creditzoo.cli import app
from creditzoo.learner.checkpoint import read_metrics
from creditzoo.learner.evaluate import EvalConfig, evaluate
from creditzoo.tasks import TASKS, Metric, get_task

runner = CliRunner()


def _glow_score(images: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
    glow = brightness_reward(images, prompts)  # [B]
    return {"glow": glow, "lit": (glow > 0.5).float()}


GLOW = dataclasses.replace(
    make_task(),
    name="glow",
    score=_glow_score,
    metrics=(Metric("glow", "mean red-channel brightness"), Metric("lit", "1 where it glows", correctness=True)),
    primary_metric="glow",
)
"""The tiny task with metrics of its own names: nothing GenEval's."""
QUICK = ["--iterations", "1", "--eval-steps", "2", "--eval-min-images-per-category", "1"]
QUICK += ["--final-eval-steps", "2", "--final-eval-samples", "2"]


@pytest.fixture
def glow_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TASKS, "glow", "test_task_metrics:GLOW")


def _train(run: Path, algo: str) -> str:
    result = runner.invoke(app, ["train", *TRAIN_ARGS, *QUICK, "--env", "glow", "--algo", algo, "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.usefixtures("glow_task")
def test_a_task_with_its_own_metrics_trains_records_and_compares(tmp_path: Path) -> None:
    from creditzoo.analysis.compare import CompareOptions, compare_runs
    from creditzoo.analysis.runs import load_run

    said = _train(tmp_path / "a", "flow_grpo")
    _train(tmp_path / "b", "tp_grpo_strict")
    lines = read_metrics(tmp_path / "a")
    assert {"test_glow", "test_lit"} <= set(lines[0]) and {"final_test_glow", "final_test_lit"} <= set(lines[-1])
    assert not [key for line in lines for key in line if "partial" in key or "strict" in key]
    final = json.loads((tmp_path / "a" / "eval" / "final.json").read_text())
    assert final["metrics"] == ["glow", "lit"] and list(final["summary"]) == ["glow", "lit", "per_category"]
    assert set(final["images"][0]) == {"prompt_index", "prompt", "category", "sample_index", "glow", "lit"}
    # the summary is the category-balanced mean of the per-image scores (float32 vs float64 sums: 1e-6)
    categories = {image["category"] for image in final["images"]}
    per_category = [[i["glow"] for i in final["images"] if i["category"] == c] for c in categories]
    balanced = sum(sum(v) / len(v) for v in per_category) / len(per_category)
    assert final["summary"]["glow"] == pytest.approx(balanced, abs=1e-6) == lines[-1]["final_test_glow"]
    iteration = json.loads((tmp_path / "a" / "eval" / "iter_000001.json").read_text())
    assert iteration["glow"] == lines[-1]["test_glow"]
    done = next(line for line in said.splitlines() if line.startswith("done: "))
    assert done == (
        f"done: {tmp_path / 'a'}  test glow {lines[0]['test_glow']:.4f} -> {lines[-1]['test_glow']:.4f}, "
        f"lit {lines[0]['test_lit']:.4f} -> {lines[-1]['test_lit']:.4f}"
    )
    base = json.loads((tmp_path / "a" / "eval" / "base.json").read_text())["summary"]
    glow, lit = (f"{name} {base[name]:.4f} -> {final['summary'][name]:.4f}" for name in ("glow", "lit"))
    assert said.splitlines()[-1].endswith(f": {glow}, {lit}")  # the final evaluation against the base model

    runs = [load_run(tmp_path / name) for name in ("a", "b")]
    comparison = compare_runs(runs, CompareOptions(resamples=50))
    assert comparison.metric == "test_glow" and comparison.metrics == {"test_glow": "glow", "test_lit": "lit"}
    assert comparison.paired  # both runs' eval/final.json read through the task's per-image field names
    by_algo = {g.algo: g for g in comparison.groups}
    assert by_algo["flow_grpo"].final.values == [pytest.approx(final["summary"]["glow"])]
    assert list(by_algo["tp_grpo_strict"].guards) == ["test_lit"]
    lit = compare_runs(runs, CompareOptions(resamples=50, metric="test_lit"))
    assert lit.metric == "test_lit" and list(lit.groups[0].guards) == ["test_glow"]
    with pytest.raises(
        ValueError, match="unknown metric 'test_partial_score' for task 'glow'; valid: test_glow, test_lit"
    ):
        compare_runs(runs, CompareOptions(metric="test_partial_score"))
    from creditzoo.analysis.report import render_report

    report = render_report(comparison, {}, title="glow")
    assert "Metric: `test_glow`" in report and "| lit |" in report


def test_evaluation_reports_each_declared_metric_and_refuses_a_missing_one() -> None:
    model = TinyFlowModel()
    config = EvalConfig(num_steps=2, samples_per_prompt=2, min_images_per_category=0)
    result = evaluate(model, GLOW, config)
    assert list(result.summary) == ["glow", "lit"] and set(result.scores) == {"glow", "lit"}
    images = result.images  # [N, 3, H, W]
    torch.testing.assert_close(result.scores["glow"], brightness_reward(images, result.prompts))
    assert torch.equal(result.correct(), brightness_reward(images, result.prompts) > 0.5)
    renamed = dataclasses.replace(
        GLOW, metrics=(Metric("shine", "not what the scorer returns"),), primary_metric="shine"
    )
    with pytest.raises(ValueError, match="scorer returned no 'shine' \\(returned: glow, lit\\)"):
        evaluate(model, renamed, config)


def test_a_task_declares_a_valid_primary_metric() -> None:
    geneval = get_task("geneval")
    assert [m.name for m in geneval.metrics] == ["partial_score", "strict_accuracy", "extra_objects"]
    assert geneval.primary_metric == "partial_score" and geneval.primary.test_key == "test_partial_score"
    assert geneval.metric("extra_objects").mean == "extra_object_rate"  # the names existing run directories hold
    with pytest.raises(ValueError, match="unknown metric 'glow' of task 'glow'; valid: shine"):
        dataclasses.replace(GLOW, metrics=(Metric("shine", "m"),))
    with pytest.raises(ValueError, match="must be higher-is-better"):
        dataclasses.replace(GLOW, metrics=(Metric("glow", "m", higher_is_better=False),))
    with pytest.raises(ValueError, match="distinct names"):
        dataclasses.replace(GLOW, metrics=(Metric("glow", "m"), Metric("glow", "again")))


def test_envs_lists_each_task_s_metrics() -> None:
    result = runner.invoke(app, ["envs", "--wide"])
    assert result.exit_code == 0, result.output
    assert "metrics: partial_score (primary), strict_accuracy, extra_object_rate" in result.output
    assert "metrics: pickscore (primary)" in result.output and "metrics: ocr (primary), exact_text" in result.output
