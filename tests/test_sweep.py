"""`creditzoo sweep`: grid parsing, the manifest, resuming after an interruption, subprocess and submitit workers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from threads import torch_threads
from tiny_model import TRAIN_ARGS
from typer.testing import CliRunner

import creditzoo.learner.run as run_module
from creditzoo.cli import app
from creditzoo.learner.checkpoint import read_metrics
from creditzoo.learner.config import TrainConfig
from creditzoo.sweep import LaunchOptions, SweepError, execute, expand, parse_grid, parse_seeds, prepare
from creditzoo.sweep import launch as sweep_module

TESTS = Path(__file__).parent
runner = CliRunner()
TINY = [*TRAIN_ARGS, *["--iterations", "2", "--eval-every", "0"]]
TINY_FIELDS = dict(
    env="tiny",
    iterations=2,
    prompts_per_iteration=2,
    group_size=2,
    num_steps=3,
    lora_rank=2,
    eval_every=0,
    learning_rate=0.01,
    clip_range=0.2,
)  # a TrainConfig is checked against its task, which the fixture below registers


pytestmark = pytest.mark.usefixtures("tiny_task")


def sweep(*args: str):
    return runner.invoke(app, ["sweep", *TINY, *args])


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def comparable(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


class CountingTrain:
    """Wraps run.train: records (run name, resume) per call and can interrupt one call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, interrupt: str | None = None, at_iteration: int = 1):
        self.calls: list[tuple[str, bool]] = []
        self.original = run_module.train
        self.interrupt, self.at_iteration = interrupt, at_iteration
        monkeypatch.setattr(run_module, "train", self)

    def __call__(self, config, run_dir, *, resume=False, **kwargs):
        name = Path(run_dir).name
        self.calls.append((name, resume))
        if name != self.interrupt:
            return self.original(config, run_dir, resume=resume, **kwargs)

        def progress(iteration, total, metrics):
            if iteration == self.at_iteration:
                raise KeyboardInterrupt

        return self.original(config, run_dir, resume=resume, progress=progress, **kwargs)


def test_grid_parsing_maps_train_spellings_and_types() -> None:
    grid = parse_grid(["lr=1e-3,3e-3", "window=2,none", "noise-level=0.5", "completion=ode,x0,ode:2"])
    assert grid == {
        "learning_rate": [1e-3, 3e-3],
        "window_size": [2, None],
        "noise_level": [0.5],
        "completion": ["ode", "x0", "ode:2"],
    }
    assert isinstance(parse_grid(["shift=3"])["shift"][0], float)
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("3-5") == [3, 4, 5]
    for bad, message in [
        (["learning_rat=1"], "unknown grid option 'learning_rat'; valid: adv_clip"),
        (["algo=flow_grpo"], "sweep it with --algo"),
        (["seed=1,2"], "sweep it with --seeds"),
        (["steps=ten"], "grid value 'ten' for num_steps is not int"),
        (["window=2.5"], "is not int or none"),
        (["lr"], "malformed --grid 'lr'"),
        (["lr=1,1"], "repeats a value"),
        (["lr=1", "learning_rate=2"], "gives learning_rate twice"),
    ]:
        with pytest.raises(SweepError, match=message.replace("(", r"\(")):
            parse_grid(bad)
    for bad in ("a,b", "1,1", "", "-2"):
        with pytest.raises(SweepError, match="--seeds"):
            parse_seeds(bad)


def test_expand_names_every_run_and_refuses_colliding_names() -> None:
    def make(values):
        return TrainConfig(**{**TINY_FIELDS, **values})

    runs = expand(["flow_grpo", "tp_grpo"], [0, 1], {"window_size": [1, 2]}, make)
    assert [r.name for r in runs[:4]] == [
        "flow_grpo-window_size=1-seed0",
        "flow_grpo-window_size=1-seed1",
        "flow_grpo-window_size=2-seed0",
        "flow_grpo-window_size=2-seed1",
    ]
    assert len(runs) == 8 and runs[-1].config.algo == "tp_grpo" and runs[-1].config.window_size == 2
    assert {r.config.seed for r in runs} == {0, 1}
    with pytest.raises(SweepError, match="share the directory"):
        expand(["tp_grpo"], [0], {"model": ["sd3:/w/a:b", "sd3:/w/a?b"]}, make)  # both valid, one name


@pytest.mark.slow
def test_interrupted_sweep_resumes_and_trains_only_the_other_two(tmp_path, monkeypatch) -> None:
    out = tmp_path / "study"
    args = ["--algo", "tp_grpo_strict", "--seeds", "0,1,2", "--out", str(out)]
    names = [f"tp_grpo_strict-seed{seed}" for seed in (0, 1, 2)]
    # the second run is interrupted after its first iteration's checkpoint
    first = CountingTrain(monkeypatch, interrupt=names[1], at_iteration=1)
    result = sweep(*args)
    assert result.exit_code == 130, result.output
    assert "run the same command again" in result.output
    assert [name for name, _ in first.calls] == names[:2]
    data = manifest(out)
    assert [run["status"] for run in data["runs"]] == ["finished", "running", "pending"]
    finished_metrics = (out / names[0] / "metrics.jsonl").stat().st_mtime_ns
    assert (out / names[1] / "checkpoints" / "latest").read_text() == "iter_000001"

    second = CountingTrain(monkeypatch)
    result = sweep(*args)
    assert result.exit_code == 0, result.output
    assert second.calls == [(names[1], True), (names[2], False)]  # the finished run is skipped
    assert [run["status"] for run in manifest(out)["runs"]] == ["finished"] * 3
    assert (out / names[0] / "metrics.jsonl").stat().st_mtime_ns == finished_metrics
    # the resumed run ends exactly where an uninterrupted run of its config ends
    reference = run_module.train(
        TrainConfig.from_dict(manifest(out)["runs"][1]["config"]), tmp_path / "reference", resume=False
    )
    assert comparable(read_metrics(out / names[1])) == comparable(reference.metrics)

    third = CountingTrain(monkeypatch)
    result = sweep(*args)
    assert result.exit_code == 0 and third.calls == []  # a finished sweep is never trained again


@pytest.mark.slow
def test_manifest_format(tmp_path) -> None:
    out = tmp_path / "study"
    result = sweep(
        "--algo", "flow_grpo", "--algo", "tp_grpo", "--seeds", "4", "--grid", "beta=0,0.1", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    data = manifest(out)
    assert set(data) == {"runs", "grid", "created", "provenance"}
    assert data["provenance"]["torch_threads"] >= 1 and data["provenance"]["resumes"] == []
    assert data["grid"] == {"beta": [0.0, 0.1]}
    assert data["created"].startswith("20") and "T" in data["created"]
    assert len(data["runs"]) == 4
    for run in data["runs"]:
        assert set(run) == {"name", "dir", "algo", "seed", "config", "status"}
        assert run["status"] == "finished" and run["seed"] == 4 and run["dir"] == run["name"]
        assert run["config"] == TrainConfig.from_dict(run["config"]).to_dict()
        assert run["config"]["algo"] == run["algo"] and run["config"]["iterations"] == 2
        stored = json.loads((out / run["dir"] / "config.json").read_text())
        assert isinstance(stored.pop("provenance")["git_dirty"], (bool, type(None)))
        assert stored == run["config"]
        assert [line["iteration"] for line in read_metrics(out / run["dir"])] == [0, 1, 2]
    assert [(r["name"], r["config"]["beta"]) for r in data["runs"]] == [
        ("flow_grpo-beta=0.0-seed4", 0.0),
        ("flow_grpo-beta=0.1-seed4", 0.1),
        ("tp_grpo-beta=0.0-seed4", 0.0),
        ("tp_grpo-beta=0.1-seed4", 0.1),
    ]
    again = sweep(
        "--algo", "flow_grpo", "--algo", "tp_grpo", "--seeds", "4", "--grid", "beta=0,0.1", "--out", str(out)
    )  # reopened: the original provenance stays, this one is appended
    assert again.exit_code == 0, again.output
    reopened = manifest(out)["provenance"]
    assert reopened["started_utc"] == data["provenance"]["started_utc"] and len(reopened["resumes"]) == 1


@pytest.mark.slow
def test_a_sweep_directory_refuses_another_grid_or_changed_options(tmp_path, monkeypatch) -> None:
    out = tmp_path / "study"
    assert sweep("--algo", "tp_grpo", "--grid", "window=1", "--out", str(out)).exit_code == 0
    before = manifest(out)
    calls = CountingTrain(monkeypatch)
    result = sweep("--algo", "tp_grpo", "--grid", "window=1,2", "--out", str(out))
    assert result.exit_code == 2 and "holds a sweep over grid" in result.output
    result = sweep("--algo", "tp_grpo", "--grid", "window=1", "--beta", "0.1", "--out", str(out))
    assert result.exit_code == 2 and "exists with another configuration (beta: 0.0 -> 0.1)" in result.output
    assert calls.calls == [] and manifest(out) == before
    # more seeds on the same grid extend the sweep and keep the finished run
    result = sweep("--algo", "tp_grpo", "--seeds", "0,1", "--grid", "window=1", "--out", str(out))
    assert result.exit_code == 0 and calls.calls == [("tp_grpo-window_size=1-seed1", False)]
    stray = tmp_path / "other"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    result = sweep("--algo", "tp_grpo", "--out", str(stray))
    assert result.exit_code == 2 and "holds no manifest.json" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algo", "tp_grpo", "--grid", "bogus=1"], "unknown grid option 'bogus'; valid: "),
        (["--algo", "tp_grpo", "--grid", "lr=fast"], "grid value 'fast' for learning_rate is not float"),
        (["--algo", "tp_grpo", "--seeds", "x"], "malformed --seeds 'x'"),
        (["--algo", "grpo"], "unknown algorithm 'grpo'; valid: flow_grpo"),
        (["--algo", "tp_grpo", "--jobs", "0"], "jobs must be >= 1"),
        (["--algo", "tp_grpo", "--launcher", "slurm"], "unknown launcher 'slurm'; valid: local, submitit"),
        (["--algo", "tp_grpo", "--grid", "lr=0.1"], "--lr given both as an option and in --grid"),
        (["--algo", "tp_grpo", "--grid", "window=5"], "does not fit in 3 steps"),
        (["--algo", "tp_grpo", "--algo", "tp_grpo"], "--algo repeats an algorithm"),
        (["--algo", "tp_grpo", "--executor-param", "oops"], "malformed --executor-param 'oops'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args: list[str], message: str) -> None:
    result = sweep(*args, "--out", str(tmp_path / "study"))
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.strip().count("\n") == 0
    assert not (tmp_path / "study" / "manifest.json").exists()


def test_help_lists_the_train_options() -> None:
    result = runner.invoke(app, ["sweep", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--algo", "--seeds", "--grid", "--out", "--jobs", "--launcher", "--reward-noise", "--window"):
        assert option in result.output


def _worker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)


def _prepared(out: Path, seeds: list[int]) -> list[str]:
    runs = expand(["tp_grpo_strict"], seeds, {}, lambda v: TrainConfig(**{**TINY_FIELDS, **v}))
    prepare(out, runs, {})
    return [run.name for run in runs]


@pytest.mark.slow  # two subprocesses import torch: ~30 s on a busy 2-core machine
def test_jobs_run_in_parallel_subprocesses(tmp_path, monkeypatch) -> None:
    _worker_environment(monkeypatch)
    out = tmp_path / "study"
    names = _prepared(out, [0, 1])
    seen: list[tuple[str, str]] = []
    final = execute(out, names, LaunchOptions(jobs=2, imports=("tiny_task_plugin",)), lambda n, s: seen.append((n, s)))
    assert final == dict.fromkeys(names, "finished"), [(out / "logs" / f"{n}.log").read_text() for n in names]
    assert [s for _, s in seen[:2]] == ["running", "running"]  # both started before either ended
    for name in names:
        assert (out / name / "checkpoints" / "iter_000002" / "trainer_state.pt").exists()
    # each worker runs with cpu_count // jobs torch threads (creditzoo.sweep.launch.execute); a float sum over
    # another thread count is reduced in another order, so the in-process reference runs with the workers' count
    with torch_threads(max(1, (os.cpu_count() or 1) // 2)):
        here = run_module.train(TrainConfig(**{**TINY_FIELDS, "seed": 1}), tmp_path / "here")
    assert comparable(read_metrics(out / names[1])) == comparable(here.metrics)


@pytest.mark.slow
def test_a_failing_worker_marks_its_run_failed(tmp_path, monkeypatch) -> None:
    out = tmp_path / "study"
    names = _prepared(out, [0])
    final = execute(out, names, LaunchOptions(jobs=2))  # the worker does not know the tiny task: it fails
    assert final == {names[0]: "failed"}
    assert "unknown environment 'tiny'" in (out / "logs" / f"{names[0]}.log").read_text()
    assert manifest(out)["runs"][0]["status"] == "failed"


@pytest.mark.slow
def test_submitit_local_executor_runs_a_tiny_grid(tmp_path, monkeypatch) -> None:
    pytest.importorskip("submitit")
    _worker_environment(monkeypatch)
    out = tmp_path / "study"
    names = _prepared(out, [0])
    options = LaunchOptions(launcher="submitit", cluster="local", imports=("tiny_task_plugin",))
    final = execute(out, names, options)
    assert final == dict.fromkeys(names, "finished")
    assert [run["status"] for run in manifest(out)["runs"]] == ["finished"]
    assert [line["iteration"] for line in read_metrics(out / names[0])] == [0, 1, 2]
    assert any((out / "submitit").iterdir())


def test_manifest_errors_name_the_file(tmp_path) -> None:
    out = tmp_path / "study"
    out.mkdir()
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(SweepError, match="manifest.json' is not a sweep manifest"):
        sweep_module.read_manifest(out)


def test_a_run_is_finished_by_its_final_adapter_and_last_metrics_line(tmp_path) -> None:
    from creditzoo.learner.checkpoint import write_metrics
    from creditzoo.sweep import run_status

    config = TrainConfig(**TINY_FIELDS)  # iterations=2
    run = tmp_path / "run"
    final = run / "checkpoints" / "iter_000002"
    final.mkdir(parents=True)
    write_metrics(run, [{"iteration": 0}, {"iteration": 1}, {"iteration": 2}])
    assert run_status(run, config) == "pending"  # no adapter saved yet
    (final / "adapter_model.safetensors").write_bytes(b"x")
    assert run_status(run, config) == "finished"  # the optimizer state (trainer_state.pt) is not needed
    write_metrics(run, [{"iteration": 0}, {"iteration": 1}])
    assert run_status(run, config) == "pending"


def test_a_run_kept_without_its_adapter_is_finished_by_its_final_evaluation(tmp_path) -> None:
    """Studies commit config, metrics and eval records but no adapters: a fresh clone must not retrain them."""
    from creditzoo.learner.checkpoint import write_metrics
    from creditzoo.sweep import run_status

    config = TrainConfig(**TINY_FIELDS)  # iterations=2
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    write_metrics(run, [{"iteration": 0}, {"iteration": 1}, {"iteration": 2}])
    assert run_status(run, config) == "pending"  # neither the adapter nor the final evaluation
    (run / "eval" / "final.json").write_text(json.dumps({"iteration": 1, "images": []}))
    assert run_status(run, config) == "pending"  # the final evaluation of another iteration
    (run / "eval" / "final.json").write_text("{trunc")
    assert run_status(run, config) == "pending"  # a damaged record
    (run / "eval" / "final.json").write_text(json.dumps({"iteration": 2, "images": []}))
    assert run_status(run, config) == "finished"
    write_metrics(run, [{"iteration": 0}, {"iteration": 1}])
    assert run_status(run, config) == "pending"  # the last metrics line is not there


def test_the_old_module_path_is_an_alias_of_the_sweep_package() -> None:
    """Sweeps started before the move name ``creditzoo.learner.sweep`` in their workers and submitit jobs."""
    import creditzoo.learner.sweep as old
    import creditzoo.sweep.launch as launch

    assert old.train_run is launch.train_run and old.execute is launch.execute
    assert old._main is launch.main


@pytest.mark.slow  # a subprocess imports creditzoo
def test_workers_start_under_the_new_and_the_old_module_path(tmp_path) -> None:
    for module in ("creditzoo.sweep", "creditzoo.learner.sweep"):
        done = subprocess.run(
            [sys.executable, "-m", module, str(tmp_path / "none"), "run"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode != 0 and f"no manifest.json in {str(tmp_path / 'none')!r}" in done.stderr, done.stderr
