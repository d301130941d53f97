"""Damaged run directories, one writer per run directory, sweep workers tied to their parent (issue 14).

Every case checks the exit code, the one line it prints, and that finished work on disk is unchanged (content
hash and modification time of the files that iterations up to the restored checkpoint wrote). Each test fails
on the code before this change (a traceback, a silent restart from iteration 0, a second writer let in, files
written 0600, ...). Comparisons of recomputed files are exact only where both sides ran in this process with
the same thread count (a resumed run repeats the original bit for bit, docs/run-directory.md "Resume rules").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_model import TRAIN_ARGS
from typer.testing import CliRunner

from creditzoo.cli import app
from creditzoo.learner.checkpoint import read_metrics

runner = CliRunner()
LOCK = ".lock"  # docs/run-directory.md
TINY = [*TRAIN_ARGS, "--eval-every", "0", "--eval-samples-per-prompt", "1", "--eval-min-images-per-category", "1"]


pytestmark = pytest.mark.usefixtures("tiny_task")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-iteration tiny run (checkpoints iter_000001 and iter_000002), trained once per module."""
    from creditzoo.tasks import TASKS

    run = tmp_path_factory.mktemp("pristine") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(TASKS, "tiny", "tiny_model:TASK")
        result = runner.invoke(app, ["train", *TINY, "--iterations", "2", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the pristine run to damage."""
    copy = tmp_path / "run"
    shutil.copytree(pristine, copy)
    return copy


def snapshot(paths: list[Path]) -> dict[Path, tuple[str, int]]:
    """Content hash and modification time of each file: "unchanged" means neither moved."""
    return {path: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) for path in paths}


def finished_work(run: Path, upto: int) -> list[Path]:
    """The files that iterations 0..upto wrote and a resume from checkpoint ``upto`` must leave alone."""
    files = [run / "eval" / "iter_000000.json"]
    files += [run / "rollouts" / f"iter_{i:06d}.safetensors" for i in range(1, upto + 1)]
    files += sorted((run / "checkpoints" / f"iter_{upto:06d}").iterdir()) if upto else []
    return files


def everything(run: Path) -> dict[Path, tuple[str, int]]:
    return snapshot(sorted(path for path in run.rglob("*") if path.is_file()))


def warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("warning:")]


def comparable(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# ------------------------------------------------------------------------------------- damaged checkpoints


DAMAGES = {
    "truncated adapter": ("iter_000002/adapter_model.safetensors", lambda p: truncate(p)),
    "corrupt trainer state": ("iter_000002/trainer_state.pt", lambda p: p.write_bytes(b"\x00garbage" * 64)),
    "deleted trainer state": ("iter_000002/trainer_state.pt", lambda p: p.unlink()),
    "deleted latest": ("latest", lambda p: p.unlink()),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_resume_falls_back_past_a_damaged_checkpoint(run: Path, pristine: Path, damage: str) -> None:
    name, hurt = DAMAGES[damage]
    bad = run / "checkpoints" / name
    resumed_from = 2 if name == "latest" else 1  # an intact iter_000002 is still the newest complete one
    end = resumed_from + 1  # so that rotation keeps the checkpoint resumed from
    kept = snapshot(finished_work(run, resumed_from))
    hurt(bad)
    result = runner.invoke(app, ["train", "--resume", str(run), "--iterations", str(end)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    [warning] = warnings(result.output)  # exactly one line, naming the bad file
    assert str(bad) in warning and f"iter_{resumed_from:06d}" in warning
    assert snapshot(finished_work(run, resumed_from)) == kept  # not retrained, not rewritten, not rotated away
    lines = read_metrics(run)
    assert [line["iteration"] for line in lines] == list(range(end + 1))
    assert comparable(lines[:3]) == comparable(read_metrics(pristine))  # the recomputed iteration 2 included
    original = (pristine / "checkpoints" / "iter_000002" / "adapter_model.safetensors").read_bytes()
    assert (run / "checkpoints" / "iter_000002" / "adapter_model.safetensors").read_bytes() == original
    assert (run / "checkpoints" / "latest").read_text() == f"iter_{end:06d}"


def test_resume_with_no_loadable_checkpoint_stops_with_one_line(run: Path) -> None:
    for name in ("iter_000001", "iter_000002"):
        truncate(run / "checkpoints" / name / "trainer_state.pt")
    before = everything(run)
    result = runner.invoke(app, ["train", "--resume", str(run), "--iterations", "3"])
    assert result.exit_code == 2, result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "no checkpoint" in error and str(run / "checkpoints" / "iter_000002" / "trainer_state.pt") in error
    assert "Traceback" not in result.output
    assert everything(run) == before


def test_rotation_never_deletes_the_only_complete_older_checkpoint(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from tiny_model import TinyFlowModel

    from creditzoo.learner.checkpoint import save_checkpoint

    policy = get_peft_model(TinyFlowModel(), LoraConfig(r=2, target_modules=["conv_in", "conv_out"]))
    for iteration in (1, 2):
        save_checkpoint(tmp_path, iteration, policy, {"iteration": iteration, "optimizer": {}})
    (tmp_path / "checkpoints" / "iter_000002" / "trainer_state.pt").unlink()  # iter_000002 is incomplete
    kept = snapshot(sorted((tmp_path / "checkpoints" / "iter_000001").iterdir()))
    save_checkpoint(tmp_path, 3, policy, {"iteration": 3, "optimizer": {}})
    assert snapshot(sorted((tmp_path / "checkpoints" / "iter_000001").iterdir())) == kept
    save_checkpoint(tmp_path, 4, policy, {"iteration": 4, "optimizer": {}})  # now 3 and 4 are the two complete
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["iter_000003", "iter_000004", "latest"]


# ----------------------------------------------------------------------------------- metrics and config


def test_truncated_last_metrics_line_is_dropped_and_the_run_continues_from_a_checkpoint(
    run: Path, pristine: Path
) -> None:
    path = run / "metrics.jsonl"
    text = path.read_text()
    path.write_text(text[: text.rindex("\n", 0, -1) + 40])  # the last line (iteration 2) cut after 39 characters
    kept = snapshot(finished_work(run, 1))
    result = runner.invoke(app, ["train", "--resume", str(run), "--iterations", "2"])
    assert result.exit_code == 0, result.output
    said = warnings(result.output)
    assert any(f"{path}:3" in line and "truncated" in line for line in said), said
    assert all(line.count("\n") == 0 for line in said)
    assert snapshot(finished_work(run, 1)) == kept  # iteration 2's checkpoint has no metrics line: redone from 1
    assert comparable(read_metrics(run)) == comparable(read_metrics(pristine))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "config.json' is empty"),
        (b'{"algo": "tp_grpo_strict", ', "config.json' is not valid JSON (Expecting property name"),
        (b"\xff\xfe\x00binary", "config.json' is not text"),
    ],
)
def test_damaged_config_json_is_one_line_naming_it(run: Path, content: bytes, message: str) -> None:
    (run / "config.json").write_bytes(content)
    before = everything(run)
    for command in (["train", "--resume", str(run), "--iterations", "3"], ["eval", "--run", str(run)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert message in result.output and str(run / "config.json") in result.output
        assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
    assert everything(run) == before


def test_a_corrupt_metrics_line_before_the_end_names_file_and_line(run: Path) -> None:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1][:30], lines[2]]) + "\n")
    before = everything(run)
    result = runner.invoke(app, ["train", "--resume", str(run), "--iterations", "3"])
    assert result.exit_code == 2, result.output
    assert f"{path}:2: corrupt or truncated metrics line" in result.stderr
    assert result.stderr.strip().count("\n") == 0  # stdout may hold the progress bar's first line
    assert everything(run) == before


# ------------------------------------------------------------------------------------------------- eval


@pytest.mark.parametrize("how", ["--lora", "--run"])
def test_eval_with_a_corrupt_adapter_is_one_line_naming_it(run: Path, tmp_path: Path, how: str) -> None:
    adapter = run / "checkpoints" / "iter_000002" / "adapter_model.safetensors"
    truncate(adapter)
    before = everything(run)
    target = ["--env", "tiny", "--lora", str(adapter.parent)] if how == "--lora" else ["--run", str(run)]
    result = runner.invoke(app, ["eval", *target, "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 2, result.output
    assert str(adapter) in result.output and "truncated or corrupt" in result.output
    assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
    assert everything(run) == before and not (tmp_path / "grid.png").exists()


def test_eval_of_a_missing_run_directory_says_it_does_not_exist(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "--run", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert f"run directory '{tmp_path / 'missing'}' does not exist" in result.output
    assert "nothing to resume" not in result.output


# ------------------------------------------------------------------------------------------- the lock


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not): read from /proc, apart from the library's own check."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def write_lock(run: Path, pid: int) -> None:
    holder = {"pid": pid, "host": socket.gethostname(), "started": "2025-01-01T00:00:00+00:00"}
    (run / LOCK).write_text(json.dumps(holder))


@pytest.mark.parametrize("second", ["--resume", "--overwrite"])
def test_a_run_directory_held_by_a_live_process_is_refused(run: Path, second: str) -> None:
    holder = subprocess.Popen(["sleep", "60"])
    try:
        write_lock(run, holder.pid)
        before = everything(run)
        if second == "--resume":
            command = ["train", "--resume", str(run), "--iterations", "3"]
        else:
            command = ["train", *TINY, "--iterations", "1", "--seed", "7", "--overwrite", "--run-dir", str(run)]
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert f"pid {holder.pid} on host {socket.gethostname()}" in result.stderr and "in use" in result.stderr
        assert result.stderr.strip().count("\n") == 0  # stdout may hold the progress bar's first line
        assert everything(run) == before  # nothing deleted or rewritten, the lock file included
    finally:
        holder.kill()
        holder.wait()


def test_a_run_directory_held_by_a_live_writer_in_this_process_is_refused(run: Path) -> None:
    from creditzoo.learner.rundir import lock_run_dir

    before = everything(run)
    with lock_run_dir(run):  # holds the flock, as train() does, with this process's pid in the file
        result = runner.invoke(app, ["train", "--resume", str(run), "--iterations", "3"])
    assert result.exit_code == 2, result.output
    assert f"pid {os.getpid()}" in result.output
    assert everything(run) == before and not (run / LOCK).exists()  # released on leaving the block


def test_a_stale_lock_is_taken_over_with_a_warning(run: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    write_lock(run, finished.pid)
    kept = snapshot(finished_work(run, 2))
    result = runner.invoke(app, ["train", "--resume", str(run), "--iterations", "3"])
    assert result.exit_code == 0, result.output
    [warning] = warnings(result.output)
    assert f"pid {finished.pid}" in warning and "gone" in warning
    assert snapshot(finished_work(run, 2)) == kept
    assert [line["iteration"] for line in read_metrics(run)] == [0, 1, 2, 3]
    assert not (run / LOCK).exists()  # released at the end


def test_the_lock_is_released_when_training_raises(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import creditzoo.learner.run as run_module

    held = []

    def crash(*args, **kwargs):
        held.append((run / LOCK).exists())
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "save_checkpoint", crash)
    assert runner.invoke(app, ["train", "--resume", str(run), "--iterations", "3"]).exit_code != 0
    assert held == [True] and not (run / LOCK).exists()  # held while training, released by the exception


# ------------------------------------------------------------------------------------------------ leftovers


@pytest.mark.slow
def test_a_killed_writers_temporaries_are_removed_on_the_next_start(run: Path) -> None:
    staging = run / "checkpoints" / ".iter_000003.k1ll3d"
    staging.mkdir()
    (staging / "adapter_model.safetensors").write_bytes(b"half")
    temporary = run / ".metrics.jsonl.x7y8z9"
    temporary.write_text('{"iteration": 0')
    result = runner.invoke(app, ["train", "--resume", str(run), "--iterations", "3"])
    assert result.exit_code == 0, result.output
    assert not staging.exists() and not temporary.exists()
    assert len(warnings(result.output)) == 2 and str(staging) in result.output


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_run_files_honour_the_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        result = runner.invoke(app, ["train", *TINY, "--iterations", "1", "--run-dir", str(tmp_path / "run")])
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    files = [run / "config.json", run / "metrics.jsonl", run / "rollouts" / "iter_000001.safetensors"]
    files += [run / "eval" / "final.json", run / "checkpoints" / "latest"]
    files += sorted((run / "checkpoints" / "iter_000001").iterdir())
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in files} == {
        path.name: oct(0o666 & ~umask) for path in files
    }
    folders = [run, run / "checkpoints", run / "checkpoints" / "iter_000001", run / "rollouts", run / "eval"]
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in folders} == {
        path.name: oct(0o777 & ~umask) for path in folders
    }


@pytest.mark.slow
def test_resume_with_tensorboard_backfills_the_earlier_history(run: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = runner.invoke(app, ["train", "--resume", str(run), "--iterations", "3", "--log", "tensorboard"])
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    scalars = events.Scalars("reward_mean")
    assert [event.step for event in scalars] == [1, 2, 3]
    assert [event.value for event in scalars] == pytest.approx([line["reward_mean"] for line in read_metrics(run)[1:]])


# ---------------------------------------------------------------------------------------------- sweeps


PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())], start_new_session=True)
print(child.pid, flush=True)
time.sleep(120)
"""
CHILD = """
import sys, time
from creditzoo.learner.rundir import die_with_parent
die_with_parent(int(sys.argv[1]))
print("armed", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_dies_with_its_parent() -> None:
    """The mechanism sweep workers use: a session of their own plus ``die_with_parent`` first thing."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "armed"
        assert pid_alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child)
    finally:
        parent.kill()
        if child is not None and pid_alive(child):
            os.kill(child, signal.SIGKILL)


def test_sweep_workers_are_started_to_die_with_the_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from creditzoo.sweep import launch as sweep_module

    started = []

    class Recorder:
        def __init__(self, command, **kwargs):
            started.append((command, kwargs))
            self.returncode, self.pid = 0, -1

        def poll(self):
            return 0

    prepared = _prepared_sweep(tmp_path / "study")
    monkeypatch.setattr(sweep_module.subprocess, "Popen", Recorder)
    sweep_module.execute(tmp_path / "study", prepared, sweep_module.LaunchOptions(jobs=2))
    [(command, kwargs)] = started
    assert f"--parent={os.getpid()}" in command and kwargs["start_new_session"] is True


def _prepared_sweep(out: Path, iterations: int = 1, seeds: tuple[int, ...] = (0,)) -> list[str]:
    from creditzoo.learner.config import TrainConfig
    from creditzoo.sweep import expand, prepare

    fields = dict(env="tiny", iterations=iterations, prompts_per_iteration=2, group_size=2, num_steps=3, lora_rank=2)
    runs = expand(["tp_grpo_strict"], list(seeds), {}, lambda v: TrainConfig(**{**fields, "eval_every": 0, **v}))
    prepare(out, runs, {})
    return [run.name for run in runs]


def test_a_run_held_by_an_old_worker_is_not_marked_failed(tmp_path: Path) -> None:
    from creditzoo.sweep import LaunchOptions, execute, read_manifest

    out = tmp_path / "study"
    [name] = _prepared_sweep(out)
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (out / name).mkdir()
        write_lock(out / name, holder.pid)  # an orphan of a killed sweep still trains it
        final = execute(out, [name], LaunchOptions(jobs=1))
    finally:
        holder.kill()
        holder.wait()
    assert final == {name: "pending"} and read_manifest(out).run(name).status == "pending"
    assert f"pid {holder.pid}" in (out / "logs" / f"{name}.log").read_text()
    assert not (out / name / "config.json").exists()  # the second worker wrote nothing


def test_a_run_finished_on_disk_stays_finished_whatever_its_worker_returned(pristine: Path, tmp_path: Path) -> None:
    from creditzoo.sweep import prepare, read_manifest
    from creditzoo.sweep.launch import _StatusBook

    out = tmp_path / "study"
    from creditzoo.learner.run import load_run_config
    from creditzoo.sweep import SweepRun

    run = SweepRun(name="done", algo="tp_grpo_strict", seed=0, config=load_run_config(pristine))
    prepare(out, [run], {})
    shutil.copytree(pristine, out / "done", dirs_exist_ok=True)
    book = _StatusBook(out, None)
    book.finish("done", ok=False)  # e.g. a rerun's worker refused, while an old one finished it
    assert read_manifest(out).run("done").status == "finished"


SWEEP_PARENT = """
import sys
sys.path.insert(0, sys.argv[2])
import tiny_task_plugin
from creditzoo.sweep import LaunchOptions, execute, read_manifest
out = sys.argv[1]
execute(out, [run.name for run in read_manifest(out).runs], LaunchOptions(jobs=2, imports=("tiny_task_plugin",)))
"""


@pytest.mark.slow  # six worker processes import torch: about a minute on a busy 2-core machine
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_kill_9_of_a_sweep_stops_its_workers_and_a_rerun_ends_as_an_uninterrupted_sweep(tmp_path: Path) -> None:
    from creditzoo.sweep import read_manifest, run_status

    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    names = _prepared_sweep(cut, iterations=8, seeds=(0, 1))
    _prepared_sweep(whole, iterations=8, seeds=(0,))
    parent = subprocess.Popen([sys.executable, "-c", SWEEP_PARENT, str(cut), tests], env=env)
    try:
        locks = [cut / name / LOCK for name in names]
        deadline = time.monotonic() + 300
        while not (all(lock.exists() for lock in locks) and (cut / names[0] / "checkpoints" / "iter_000001").exists()):
            assert time.monotonic() < deadline and parent.poll() is None, "the workers did not start"
            time.sleep(0.02)
        workers = [json.loads(lock.read_text())["pid"] for lock in locks]
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    finally:
        parent.kill()
    deadline = time.monotonic() + 15
    while any(pid_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in workers)  # no orphan trains on
    config = read_manifest(cut).run(names[0]).config
    assert run_status(cut / names[0], config) == "pending"  # killed mid-run, not after it
    for out in (cut, whole):  # the rerun resumes the cut sweep; the whole one runs uninterrupted
        subprocess.run([sys.executable, "-c", SWEEP_PARENT, str(out), tests], env=env, check=True, timeout=600)
    assert [run.status for run in read_manifest(cut).runs] == ["finished", "finished"]
    # both sides ran in sweep workers with the same thread count (cpu_count // 2), so the floats repeat exactly
    assert comparable(read_metrics(cut / names[0])) == comparable(read_metrics(whole / names[0]))
