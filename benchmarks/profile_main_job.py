"""Where the README's main job spends its time: a phase table and a torch.profiler operator table.

The main job is ``creditzoo train --algo tp_grpo_strict --env geneval`` (the task defaults: 40 iterations, an
evaluation every 10 iterations with the 20-step ODE). This script runs the same job for ``--iterations N`` through
``creditzoo.learner.run.train`` and times, in this process:

- start-up: importing torch, creditzoo, peft (which imports transformers); loading the model; building the
  learner (LoRA, environment, optimizer);
- each iteration's phases as the run itself logs them in ``metrics.jsonl`` (sampling, completions, reward,
  update; "credit + logging" is the rest of the iteration);
- the in-run evaluations and the per-iteration bookkeeping (rollout record, metrics file, checkpoint);

and extrapolates the phase table to the 40-iteration run (start-up once, 40 iterations, 5 evaluations). Then it
profiles operators with torch.profiler over one iteration and one evaluation (after a warm-up iteration) and weights
them as the 40-iteration run does (40 x iteration + 5 x evaluation). Convolutions are split into the base model's
and the LoRA adapter's by the weight's shape (LoRA A: ``rank`` output channels; LoRA B: a 1x1 kernel with ``rank``
input channels); ``aten::mm`` is the LoRA adapters of the linear layers (the base layers call ``addmm``).

Run: OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2 python benchmarks/profile_main_job.py [--iterations 3]
[--lora-compute merged]
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402  (the clock starts before the imports it measures)
import collections  # noqa: E402
import functools  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

TORCH_IMPORTED = time.perf_counter()

import creditzoo.learner.run as run_module  # noqa: E402
from creditzoo.learner.config import TrainConfig  # noqa: E402
from creditzoo.learner.evaluate import EvalConfig, evaluate  # noqa: E402
from creditzoo.learner.grpo import GRPOLearner  # noqa: E402
from creditzoo.learner.run import EVAL_SEED, build_reward, load_task  # noqa: E402
from creditzoo.models import load_model  # noqa: E402

CREDITZOO_IMPORTED = time.perf_counter()

import peft  # noqa: E402, F401  (imported lazily by the learner; timed here on its own)

PEFT_IMPORTED = time.perf_counter()

MAIN_JOB_ITERATIONS = 40
MAIN_JOB_EVALUATIONS = 5  # iterations 0, 10, 20, 30, 40
ITERATION_PHASES = ("sampling", "completions", "reward", "update")
TIMED = {  # run-module attributes train() looks up at call time: (phase, how often it runs in the main job)
    "load_model": "start-up: load the model",
    "GRPOLearner": "start-up: LoRA, environment, optimizer",
    "_evaluate": "evaluation (20-step ODE, 216 images)",
    "write_record": "bookkeeping: rollout record",
    "write_metrics": "bookkeeping: metrics.jsonl",
    "save_checkpoint": "bookkeeping: checkpoint",
}


def main_job_config(iterations: int, seed: int) -> TrainConfig:
    """The README's main job (task defaults) with ``iterations`` iterations."""
    return TrainConfig.for_task(
        algo="tp_grpo_strict", env="geneval", iterations=iterations, seed=seed, lora_compute=ARGS.lora_compute
    )


def _timed(totals: dict[str, list[float]], name: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[name].append(time.perf_counter() - started)

    return wrapper


def phase_table(iterations: int, seed: int) -> tuple[list[tuple[str, float, float, int]], float]:
    """Run the main job for ``iterations`` iterations and time its phases.

    Returns:
        (rows, wall): rows of (phase, seconds per occurrence, seconds in the 40-iteration run, occurrences in it)
        and the measured wall time of ``train`` itself.
    """
    totals: dict[str, list[float]] = collections.defaultdict(list)
    originals = {name: getattr(run_module, name) for name in TIMED}
    for name, function in originals.items():  # this process only: time what train() calls, change nothing
        setattr(run_module, name, _timed(totals, name, function))
    try:
        with tempfile.TemporaryDirectory() as directory:
            started = time.perf_counter()
            summary = run_module.train(main_job_config(iterations, seed), Path(directory) / "run")
            wall = time.perf_counter() - started
    finally:
        for name, function in originals.items():
            setattr(run_module, name, function)
    lines = [line for line in summary.metrics if line.get("seconds")]
    per_iteration = {phase: sum(line["seconds"][phase] for line in lines) / len(lines) for phase in ITERATION_PHASES}
    total = sum(line["seconds"]["total"] for line in lines) / len(lines)
    per_iteration["credit + logging"] = total - sum(per_iteration.values())
    n, evals = MAIN_JOB_ITERATIONS, MAIN_JOB_EVALUATIONS
    rows = [
        ("start-up: import torch", TORCH_IMPORTED - STARTED, TORCH_IMPORTED - STARTED, 1),
        ("start-up: import creditzoo", CREDITZOO_IMPORTED - TORCH_IMPORTED, CREDITZOO_IMPORTED - TORCH_IMPORTED, 1),
        (
            "start-up: import peft (+ transformers)",
            PEFT_IMPORTED - CREDITZOO_IMPORTED,
            PEFT_IMPORTED - CREDITZOO_IMPORTED,
            1,
        ),
    ]
    for name in ("load_model", "GRPOLearner"):
        rows.append((TIMED[name], totals[name][0], totals[name][0], 1))
    for phase, seconds in per_iteration.items():
        rows.append((f"iteration: {phase}", seconds, seconds * n, n))
    evaluation = sum(totals["_evaluate"]) / len(totals["_evaluate"])
    rows.append((TIMED["_evaluate"], evaluation, evaluation * evals, evals))
    for name in ("write_record", "write_metrics", "save_checkpoint"):
        mean = sum(totals[name]) / len(totals[name])
        rows.append((TIMED[name], mean, mean * n, n))
    return rows, wall


def classify(name: str, shapes: list) -> str:
    """Operator group of one profiler row: base/LoRA convolution, LoRA matmul, or the operator's own name."""
    forward = name == "aten::mkldnn_convolution"  # inputs (input, weight, ...)
    backward = name == "aten::convolution_backward"  # inputs (grad_output, input, weight, ...)
    weight = (shapes[1] if forward else shapes[2] if backward else None) if len(shapes) > 2 else None
    if weight and len(weight) == 4:  # [out, in, kh, kw]
        rank = ARGS.lora_rank
        lora = weight[0] == rank or (weight[1] == rank and weight[2:] == [1, 1])
        kind = "forward" if forward else "backward"
        return f"convolution {kind}, {'LoRA' if lora else 'base'}"
    if name == "aten::mm":
        return "aten::mm (LoRA of the linear layers)"
    return name


def operator_table(seed: int, top: int) -> list[tuple[str, float, float]]:
    """Self CPU seconds per operator group, weighted as the 40-iteration run: 40 x iteration + 5 x evaluation.

    Returns:
        rows of (group, seconds in the 40-iteration run, share of the profiled total), largest first.
    """
    from torch.profiler import ProfilerActivity, profile

    config = main_job_config(2, seed)
    task = load_task(config)
    device = torch.device("cpu")
    model = load_model(task.default_model, device=device)
    learner = GRPOLearner(config, model, build_reward(task, config), task.train_prompts(), device)
    learner.iteration(1)  # warm-up (and a non-zero LoRA B)
    eval_config = EvalConfig(
        num_steps=config.eval_steps,
        guidance_scale=config.guidance_scale,
        samples_per_prompt=config.eval_samples_per_prompt,
        min_images_per_category=config.eval_min_images_per_category,
        seed=EVAL_SEED,
        shift=learner.shift,
    )
    groups: dict[str, float] = collections.defaultdict(float)
    for weight, work in ((MAIN_JOB_ITERATIONS, lambda: learner.iteration(2)), (MAIN_JOB_EVALUATIONS, None)):
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
            work() if work is not None else evaluate(learner.policy, task, eval_config)
        for row in profiler.key_averages(group_by_input_shape=True):
            groups[classify(row.key, row.input_shapes)] += weight * row.self_cpu_time_total / 1e6
    total = sum(groups.values())
    ranked = sorted(groups.items(), key=lambda item: -item[1])
    rows = [(name, seconds, seconds / total) for name, seconds in ranked[:top]]
    rest = sum(seconds for _, seconds in ranked[top:])
    rows.append((f"{len(ranked) - top} other operators", rest, rest / total))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3, help="iterations of the timed run (>= 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=20, help="operator groups listed")
    parser.add_argument("--lora-rank", type=int, default=16, help="the adapter's rank (toy default 16)")
    parser.add_argument("--skip-operators", action="store_true", help="only the phase table")
    parser.add_argument("--lora-compute", default="peft", help="how the adapter computes: peft or merged")
    global ARGS
    ARGS = parser.parse_args()
    if ARGS.iterations < 1:
        raise SystemExit("--iterations must be >= 1")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    rows, wall = phase_table(ARGS.iterations, ARGS.seed)
    total = sum(row[2] for row in rows)
    print(f"\nPhases (measured over {ARGS.iterations} iterations, train() wall {wall:.1f} s; extrapolated to the "
          f"{MAIN_JOB_ITERATIONS}-iteration run)\n")  # fmt: skip
    print("| phase | s each | count in the run | s in the run | share |")
    print("|---|---|---|---|---|")
    for name, each, seconds, count in rows:
        print(f"| {name} | {each:.3f} | {count} | {seconds:.1f} | {seconds / total:.1%} |")
    print(f"| total | | | {total:.1f} | 100% |")
    if ARGS.skip_operators:
        return
    print(f"\nOperators (self CPU, torch.profiler; {MAIN_JOB_ITERATIONS} x one iteration + "
          f"{MAIN_JOB_EVALUATIONS} x one evaluation)\n")  # fmt: skip
    print("| operator | self CPU s in the run | share |")
    print("|---|---|---|")
    for name, seconds, share in operator_table(ARGS.seed, ARGS.top):
        print(f"| {name} | {seconds:.1f} | {share:.1%} |")


ARGS = argparse.Namespace(lora_rank=16, lora_compute="peft")

if __name__ == "__main__":
    main()
