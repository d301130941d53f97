"""Two gloo processes train exactly as one process on the same global batch (docs/design.md, "Multi-process").

Two CPU processes are spawned with ``torch.multiprocessing`` and joined in a gloo process group; each runs one
GRPO iteration on its block of groups. Their gathered advantages, rewards and log-probs, and the LoRA weights
after the update, are compared with one process running the same global batch in this test process.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from threads import torch_threads
from tiny_model import TRAIN_PROMPTS, TinyFlowModel, brightness_reward

from creditzoo.envs.shard import Shard, draw_normal
from creditzoo.learner.config import TrainConfig
from creditzoo.learner.distributed import Processes, check_split, from_environment
from creditzoo.learner.grpo import GRPOLearner
from creditzoo.rewards.noise import NoisyReward

BASE = TrainConfig(
    prompts_per_iteration=2,
    group_size=3,
    num_steps=4,
    iterations=1,
    lora_rank=4,
    learning_rate=1e-2,
    clip_range=0.2,
    updates_per_iteration=2,  # minibatches of 3 rows drawn from the global batch: they cross the processes
    eval_steps=2,
    eval_samples_per_prompt=1,
)

CASES = {
    # balancing is batch-global in the strict TP-GRPO variant; beta > 0 runs the KL path too. One minibatch:
    # after a second AdamW step, LoRA-A entries whose first nonzero gradient is ~1e-8 (the size of AdamW's eps)
    # turn float differences of ~1e-10 in the gradient into ~4e-6 in the weight, so only one step is compared
    # at 1e-6 here; the loss and the all-reduced gradient norm are compared too, and those catch a wrong
    # normalisation that AdamW's scale-free first step would hide.
    "tp_grpo_strict": {"algo": "tp_grpo_strict", "beta": 0.05, "updates_per_iteration": 1},
    # std_mode="global": one standard deviation over the whole batch; 2 epochs x 2 minibatches = 4 AdamW steps
    "flow_grpo_global": {"algo": "flow_grpo", "std_mode": "global", "inner_epochs": 2},
    # the other rollout shapes: a tree is one group (its 2^|S| leaves), anchors are one per group
    "branch_grpo_tree": {"algo": "branch_grpo", "group_size": 4, "algo_options": {"split_steps": [0, 1]}},
    "tempflow_anchor": {"algo": "tempflow", "updates_per_iteration": 1},
    # reward repeats: the per-image variances are gathered with the rewards (docs/math.md section 10.1)
    "flow_grpo_repeats": {"algo": "flow_grpo", "reward_repeats": 2},
}
WORKER_THREADS = 1
"""torch threads of each gloo rank and of the one-process reference."""
FLOAT32_ROUNDING = 1e-6
"""What float32 arithmetic of O(1) numbers in another order (another batch size per model call) may change."""


EPS = 1e-4
"""The algorithms' default eps added to the std (creditzoo.algorithms._group.group_advantages)."""


def advantage_tolerance(reference: dict[str, torch.Tensor], step_error: float, std_mode: str) -> torch.Tensor:
    """A per-entry bound on |A_other - A_reference| when each step reward moved by at most ``step_error``.

    Every case here normalises its step rewards r [B, K] per group (or, with std_mode "global", over the batch)
    and step: A = (r - m) / (s + eps), with m the group mean and s the population std (docs/math.md, section 4).
    Moving each r by at most d moves r - m by at most 2d and s by at most 2d (the std is 1-Lipschitz in the
    centred values), so to first order |dA| <= (2d + |A| 2d) / (s + eps). Twice that covers the second-order term
    while d << s; float32 rounding of the division itself is added. The model calls run at another batch size in
    each process (3 rows, not 6), so d is not 0: it is the rewards' difference, itself held to FLOAT32_ROUNDING
    by the assertions above.
    """
    rewards, groups, advantages = reference["step_rewards"], reference["group_ids"], reference["advantages"]
    std = rewards.std(dim=0, correction=0, keepdim=True).expand_as(rewards).clone()  # [B, K], "global"
    for group in groups.unique() if std_mode == "group" else ():
        rows = groups == group
        std[rows] = rewards[rows].std(dim=0, correction=0, keepdim=True)
    return 2 * (2 * step_error * (1 + advantages.abs()) / (std + EPS)) + FLOAT32_ROUNDING


def one_iteration(name: str, processes: Processes | None) -> dict[str, torch.Tensor]:
    config = dataclasses.replace(BASE, **CASES[name])
    reward = NoisyReward(brightness_reward, None, seed=config.seed, repeats=config.reward_repeats)
    learner = GRPOLearner(config, TinyFlowModel(), reward, TRAIN_PROMPTS, torch.device("cpu"), processes)
    before = {n: p.detach().clone() for n, p in learner.policy.named_parameters() if p.requires_grad}
    result = learner.iteration(1)
    after = {n: p.detach().clone() for n, p in learner.policy.named_parameters() if p.requires_grad}
    metrics = {k: v for k, v in result.metrics.items() if isinstance(v, float | int) and k != "seconds"}
    return {"record": result.record, "before": before, "after": after, "metrics": metrics}


def _fail_on_the_main_process() -> None:
    raise ValueError("disk full")


def collectives(processes: Processes) -> dict:
    """What the helpers of Processes give on this rank: gradients summed, errors of the main process shared."""
    rank = processes.rank
    used, everywhere, nowhere = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    if rank == 0:
        used.grad = torch.tensor([1.0, 2.0])  # rank 1 has no rows for it: its gradient is missing there
    everywhere.grad = torch.tensor([rank + 1.0, 10.0])
    processes.sum_gradients([used, everywhere, nowhere])
    try:
        processes.on_main(_fail_on_the_main_process)
        error = None
    except ValueError as raised:
        error = str(raised)
    return {
        "used": used.grad,
        "everywhere": everywhere.grad,
        "nowhere": nowhere.grad,
        "error": error,
        "result": processes.on_main(lambda: rank * 10 + 7),  # the main process's value, on every process
        "gathered": processes.gather(torch.tensor([[rank, rank]])),
        "max": processes.max(torch.tensor(float(rank))),
    }


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(WORKER_THREADS)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        processes = from_environment(torch.device("cpu"))
        assert (processes.rank, processes.world_size) == (rank, world_size)
        results = {name: one_iteration(name, processes) for name in CASES}
        results["collectives"] = collectives(processes)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    import torch.multiprocessing as mp

    directory = tmp_path_factory.mktemp("gloo")
    mp.spawn(_worker, args=(2, str(directory / "init"), str(directory)), nprocs=2, join=True)
    return [torch.load(directory / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_give_the_advantages_and_lora_update_of_one(two_processes: list[dict], name: str) -> None:
    with torch_threads(WORKER_THREADS):  # the workers' thread count: only the process layout differs
        single = one_iteration(name, None)
    for rank, results in enumerate(two_processes):
        result = results[name]
        record, reference = result["record"], single["record"]
        assert sorted(record) == sorted(reference)
        # the same samples: layout-independent noise, so the same rewards and sampling log-probs
        torch.testing.assert_close(record["final_rewards"], reference["final_rewards"], atol=FLOAT32_ROUNDING, rtol=0)
        if "final_rewards_var" in reference:  # a noiseless reward repeated: every variance is exactly 0
            assert torch.equal(record["final_rewards_var"], reference["final_rewards_var"])
            assert record["final_rewards_var"].shape == record["final_rewards"].shape
        torch.testing.assert_close(record["log_probs"], reference["log_probs"], atol=1e-3, rtol=1e-6)
        # credit on the gathered global batch
        assert record["advantages"].abs().sum() > 0
        step_error = float((record["step_rewards"] - reference["step_rewards"]).abs().max())
        assert step_error <= 2 * FLOAT32_ROUNDING  # a step reward is a reward or the difference of two
        bound = advantage_tolerance(reference, step_error, CASES[name].get("std_mode", "group"))  # [B, K]
        difference = (record["advantages"] - reference["advantages"]).abs()
        assert bool((difference <= bound).all()), f"{float((difference - bound).max())} over the bound"
        torch.testing.assert_close(record["turning_points"], reference["turning_points"])
        # the update of one process on the global batch, on every process
        moved = max(float((single["after"][n] - single["before"][n]).abs().max()) for n in single["after"])
        assert moved > 1e-3, "the update must move the LoRA weights for the comparison to mean anything"
        for parameter, value in single["after"].items():
            torch.testing.assert_close(result["after"][parameter], value, atol=1e-6, rtol=0, msg=f"rank {rank}")
        # global metrics
        for key in ("reward_mean", "kept_fraction", "model_evals", "train_evals", "loss", "grad_norm"):
            assert result["metrics"][key] == pytest.approx(single["metrics"][key], rel=1e-5, abs=1e-7), key


def test_shards_of_the_global_draw_are_the_draws_of_one_process() -> None:
    whole = draw_normal(torch.Generator().manual_seed(5), (6, 2, 3))
    parts = [draw_normal(torch.Generator().manual_seed(5), (2, 2, 3), Shard(r, 3)) for r in range(3)]
    assert torch.equal(torch.cat(parts), whole)
    assert torch.equal(whole, torch.randn((6, 2, 3), generator=torch.Generator().manual_seed(5)))  # N = 1: unchanged


def test_prompts_per_iteration_must_split_over_the_processes_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"prompts_per_iteration=3 does not split over 2 processes") as error:
        check_split(3, 2)
    assert "\n" not in str(error.value) and "multiple of 2 (e.g. 2 or 4)" in str(error.value)
    config = dataclasses.replace(BASE, prompts_per_iteration=3)
    with pytest.raises(ValueError, match="does not split over 2 processes"):
        GRPOLearner(config, TinyFlowModel(), brightness_reward, TRAIN_PROMPTS, torch.device("cpu"), Processes(1, 2))
    check_split(4, 2)


def test_the_command_line_refuses_a_bad_split_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from creditzoo.cli import app
    from creditzoo.tasks import TASKS

    monkeypatch.setitem(TASKS, "tiny", "tiny_model:TASK")
    monkeypatch.setenv("WORLD_SIZE", "2")  # as accelerate launch --num_processes 2 sets it, on the main process
    monkeypatch.setenv("RANK", "0")
    args = ["train", "--env", "tiny", "--prompts-per-iteration", "3", "--group-size", "2", "--run-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: prompts_per_iteration=3 does not split over 2 processes")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(
    tmp_path: Path, *args: str, finished: Path | None = None, iteration: int = 0
) -> subprocess.CompletedProcess:
    """``accelerate launch`` of 2 gloo processes running ``creditzoo train ARGS`` (see the comments below).

    ``finished`` (a run directory) and ``iteration``: when a rank dies by a signal after that run has finished
    (its metrics reach ``iteration`` and its final evaluation is written), the launch counts as done, with a warning.
    """
    import os
    import shutil

    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("accelerate is not installed")
    # --multi_gpu is accelerate's torchrun launcher (N processes, gloo here on the CPU); its --cpu flag would start
    # one plain process with no WORLD_SIZE, whatever --num_processes says
    command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no"]
    command += ["--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    command += [str(Path(__file__).parent / "tiny_cli.py"), "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(WORKER_THREADS), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    own_exit = RANK_EXITED.search(done.stderr)  # a rank that exited by itself (e.g. 2 on bad input) is the cause
    if done.returncode != 0 and KILLED_BY_SIGNAL.search(done.stderr) and not own_exit:
        # Now and then under load (about 1 launch in 15 on the 2-core VM with two study workers running; twice in
        # about ten one-core CI passes) a non-main rank aborts with "terminate called without an active exception"
        # (SIGABRT) and torchrun then kills the other. One such abort was caught at teardown, after the run had
        # finished and written its final evaluation: relaunching then fails with "nothing left to do". The cause, in
        # gloo's or torch's teardown, is not found. A run that finished is checked by the caller like any other;
        # otherwise launch once more, and say so. A failure that repeats, or any failure without a signal, still
        # fails the test.
        first = done.stderr[-4000:]
        if finished is not None and _run_finished(finished, iteration):
            warnings.warn(f"accelerate launch: a rank died by a signal after the run finished:\n{first}", stacklevel=2)
            return subprocess.CompletedProcess(done.args, 0, done.stdout, done.stderr)
        warnings.warn(f"accelerate launch: a rank died by a signal; again. First stderr:\n{first}", stacklevel=2)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    return done


def _run_finished(run_dir: Path, iteration: int) -> bool:
    """Whether the run in ``run_dir`` recorded ``iteration`` as its last metrics line and its final evaluation."""
    import json

    from creditzoo.learner.checkpoint import read_metrics

    final = run_dir / "eval" / "final.json"
    if not (run_dir / "metrics.jsonl").is_file() or not final.is_file():
        return False
    lines = read_metrics(run_dir)
    return (
        bool(lines) and lines[-1]["iteration"] == iteration and json.loads(final.read_text())["iteration"] == iteration
    )


KILLED_BY_SIGNAL = re.compile(r"Signal \d+ \(SIG\w+\) received by PID")
"""torchrun's report of a rank killed by a signal (not an exit code of creditzoo's own)."""
RANK_EXITED = re.compile(r"exitcode\s*:\s*[1-9]")
"""torchrun's report of a rank that exited with a code of its own (its siblings are then sent SIGTERM)."""


@pytest.mark.slow
def test_accelerate_launch_trains_and_resumes_as_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`accelerate launch --num_processes 2` of the command line, interrupted and resumed, ends as one process."""
    from typer.testing import CliRunner

    from creditzoo.cli import app
    from creditzoo.learner.checkpoint import read_metrics
    from creditzoo.tasks import TASKS

    monkeypatch.setitem(TASKS, "tiny", "tiny_model:TASK")
    args = ["--env", "tiny", "--group-size", "2", "--steps", "3", "--lora-rank", "2", "--device", "cpu"]
    args += ["--eval-every", "2", "--eval-samples-per-prompt", "1", "--lr", "0.01"]
    # the launch really starts 2 processes: 3 groups do not split over them, and only the main process says so
    refused = _launch(tmp_path, *args, "--prompts-per-iteration", "3", "--run-dir", str(tmp_path / "bad"))
    assert refused.returncode != 0
    said = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert said == [
        "error: prompts_per_iteration=3 does not split over 2 processes: each process samples whole groups, "
        "so it must be a multiple of 2 (e.g. 2 or 4)"
    ]
    args += ["--prompts-per-iteration", "2"]
    with torch_threads(WORKER_THREADS):  # _launch gives each process OMP_NUM_THREADS=1
        single = CliRunner().invoke(app, ["train", *args, "--iterations", "2", "--run-dir", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    first = _launch(
        tmp_path, *args, "--iterations", "1", "--run-dir", str(tmp_path / "two"), finished=tmp_path / "two", iteration=1
    )
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = _launch(
        tmp_path, "--resume", str(tmp_path / "two"), "--iterations", "2", finished=tmp_path / "two", iteration=2
    )
    assert resumed.returncode == 0, resumed.stderr[-8000:]
    expected, got = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [line["iteration"] for line in got] == [0, 1, 2]  # one line per iteration: only the main process writes
    for mine, reference in zip(got, expected, strict=True):
        for key, value in reference.items():
            if isinstance(value, float) and key != "seconds":
                assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (reference["iteration"], key)
    checkpoints = sorted(path.name for path in (tmp_path / "two" / "checkpoints").iterdir())
    assert checkpoints == ["iter_000001", "iter_000002", "latest"]


@pytest.mark.slow
def test_collectives_sum_gradients_and_share_the_main_process_outcome(two_processes: list[dict]) -> None:
    for seen in (results["collectives"] for results in two_processes):
        assert torch.equal(seen["used"], torch.tensor([1.0, 2.0]))  # missing on rank 1 counts as 0
        assert torch.equal(seen["everywhere"], torch.tensor([3.0, 20.0]))
        assert seen["nowhere"] is None  # missing everywhere stays missing, as with one process (AdamW skips it)
        assert seen["error"] == "disk full"  # raised on the main process, raised on every process
        assert seen["result"] == 7
        assert torch.equal(seen["gathered"], torch.tensor([[0, 0], [1, 1]]))
        assert float(seen["max"]) == 1.0
