"""Live tracking: `train --log tensorboard` mirrors metrics lines, scores and grids; the config field; W&B offline."""

import importlib.util
import time

import pytest
from tiny_model import TRAIN_ARGS
from typer.testing import CliRunner

import creditzoo.learner.run as run_module
from creditzoo.cli import app
from creditzoo.learner.checkpoint import read_metrics
from creditzoo.learner.config import TrainConfig
from creditzoo.learner.tracking import NullTracker, open_tracker, scalars
from creditzoo.tasks import TASKS

runner = CliRunner()
TINY = [*TRAIN_ARGS, *["--eval-every", "1"]]


pytestmark = pytest.mark.usefixtures("tiny_task")


def events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def test_scalars_flatten_numbers_only() -> None:
    line = {
        "loss": None,
        "reward_mean": 0.5,
        "tp_rate_per_step": [0.1, 0.2],
        "name": "x",
        "ok": True,
        "nan": float("nan"),
    }
    assert scalars(line) == {"reward_mean": 0.5, "tp_rate_per_step/0": 0.1, "tp_rate_per_step/1": 0.2}
    nested = {"per_category": {"counting": {"strict_accuracy": 1, "partial_score": 0.5}}}
    assert scalars(nested, prefix="eval/") == {
        "eval/per_category/counting/strict_accuracy": 1.0,
        "eval/per_category/counting/partial_score": 0.5,
    }


def test_log_field_is_validated_and_round_trips() -> None:
    assert TrainConfig().log == () and isinstance(open_tracker((), None, {}), NullTracker)  # type: ignore[arg-type]
    config = TrainConfig(log="tensorboard,wandb")
    assert config.log == ("tensorboard", "wandb")
    assert TrainConfig.from_dict(config.to_dict()) == config and config.to_dict()["log"] == ["tensorboard", "wandb"]
    assert TrainConfig(log=["tensorboard"]) == TrainConfig(log=("tensorboard",))
    with pytest.raises(ValueError, match="unknown tracker 'mlflow' in log; valid: tensorboard, wandb"):
        TrainConfig(log=("mlflow",))


def test_bad_tracker_is_one_line(tmp_path) -> None:
    result = runner.invoke(app, ["train", *TINY, "--log", "mlflow", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.output.strip() == (
        "error: unknown tracker 'mlflow' in log; valid: tensorboard, wandb"
    )
    if importlib.util.find_spec("wandb") is None:
        result = runner.invoke(app, ["train", *TINY, "--log", "wandb", "--run-dir", str(tmp_path / "run")])
        assert result.exit_code == 2 and "pip install 'creditzoo[wandb]'" in result.output
        assert not (tmp_path / "run").exists()  # refused before a run directory was made


@pytest.mark.slow
def test_tensorboard_mirrors_every_metrics_line_score_and_grid(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--iterations", "2", "--log", "tensorboard", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    lines = read_metrics(run)
    tb = events(run)
    tags = set(tb.Tags()["scalars"])
    assert {"reward_mean", "tp_rate_per_step/0", "test_partial_score", "eval/strict_accuracy"} <= tags
    assert any(tag.startswith("eval/per_category/") for tag in tags)
    for name in ("reward_mean", "kept_fraction"):
        logged = [(e.step, e.value) for e in tb.Scalars(name)]
        assert logged == [(line["iteration"], pytest.approx(line[name])) for line in lines[1:]]
    assert [(e.step, pytest.approx(e.value)) for e in tb.Scalars("test_partial_score")] == [
        (line["iteration"], line["test_partial_score"]) for line in lines
    ]
    grids = tb.Images("eval/grid")
    assert [image.step for image in grids] == [0, 1, 2] and grids[0].width > 0
    assert "config/text_summary" in tb.Tags()["tensors"]


@pytest.mark.slow
def test_tensorboard_after_a_resume_has_each_iteration_once(tmp_path, monkeypatch) -> None:
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    args = [*TINY, "--eval-every", "0", "--iterations", "3", "--log", "tensorboard", "--run-dir", str(run)]
    original = run_module.save_checkpoint

    def crash_at_iteration_2(run_dir, iteration, policy, state):  # tensorboard already holds iteration 2
        if iteration == 2:
            raise KeyboardInterrupt
        return original(run_dir, iteration, policy, state)

    monkeypatch.setattr(run_module, "save_checkpoint", crash_at_iteration_2)
    assert runner.invoke(app, ["train", *args]).exit_code != 0
    assert [e.step for e in events(run).Scalars("reward_mean")] == [1, 2]
    monkeypatch.undo()
    monkeypatch.setitem(TASKS, "tiny", "tiny_model:TASK")
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    steps = [e.step for e in events(run).Scalars("reward_mean")]
    assert steps == [1, 2, 3]
    values = [e.value for e in events(run).Scalars("reward_mean")]
    assert values == pytest.approx([line["reward_mean"] for line in read_metrics(run)[1:]])


def test_wandb_offline_writes_a_local_run(tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--iterations", "1", "--log", "wandb", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    run_id = (run / "wandb_id").read_text()
    [offline] = [path for path in (run / "wandb").iterdir() if path.name.startswith("offline-run-")]
    assert offline.name.endswith(run_id)
    keys = (b"reward_mean", b"tp_rate_per_step/0", b"test_partial_score", b"eval/per_category", b"eval/grid")
    deadline = time.monotonic() + 60  # W&B's service process may still be writing its record stream (seen under load)
    while True:
        stream = (offline / f"run-{run_id}.wandb").read_bytes()  # the record stream: keys appear as plain strings
        missing = [key for key in keys if key not in stream]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing
