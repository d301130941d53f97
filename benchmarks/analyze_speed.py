"""Time `creditzoo analyze` on synthetic run directories of the task's default size.

Writes (into a temporary directory) one 40-iteration run (8 prompts x 8 samples, K = 9 window steps, completion
rewards a random walk, as `tp_grpo_strict` would record it) and a 36-run sweep (6 algorithms x 2 noise levels x 3
seeds, 40 iterations, evaluation every 10), then times each command end to end as a subprocess (Python start-up and
imports included, figures and JSON written), the median of ``--repeats`` runs.

Run: python benchmarks/analyze_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic_runs import write_run, write_sweep  # noqa: E402

ITERATIONS, GROUPS, GROUP_SIZE, STEPS = 40, 8, 8, 9
ALGOS = ("flow_grpo", "incremental", "tp_grpo", "tp_grpo_strict", "tp_grpo_noinit", "tp_grpo_strict_noinit")


def random_walk_records(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    records = []
    for _ in range(ITERATIONS):
        start = 0.4 + 0.2 * torch.rand(GROUPS * GROUP_SIZE, 1, generator=gen)
        steps = 0.02 * torch.randn(GROUPS * GROUP_SIZE, STEPS, generator=gen)
        rewards = torch.cat([start, start + steps.cumsum(1)], 1).clamp(0, 1)
        rewards = torch.round(rewards * 500) / 500  # a coarse scorer: some increments are exactly zero
        records.append((rewards, torch.arange(GROUPS).repeat_interleave(GROUP_SIZE)))
    return records


def curve(slope: float, seed: int) -> dict[int, float]:
    return {i: 0.5 + slope * i + 0.01 * (seed - 1) * (i > 0) for i in range(0, ITERATIONS + 1, 10)}


def build(root: Path) -> tuple[Path, Path]:
    run = write_run(root / "run", records=random_walk_records(0))
    runs = {}
    for index, algo in enumerate(ALGOS):
        for noise in (None, "gaussian:0.05"):
            for seed in range(3):
                runs[f"{algo}-{noise or 'clean'}-{seed}"] = dict(
                    algo=algo,
                    seed=seed,
                    reward_noise=noise,
                    records=random_walk_records(seed) if algo != "flow_grpo" else [],
                    test_scores=curve(0.004 + 0.001 * index - 0.001 * (noise is not None), seed),
                    train_rewards=[0.4 + 0.005 * i for i in range(1, ITERATIONS + 1)],
                    model_evals=640.0 if algo == "flow_grpo" else 4096.0,
                    seconds=5.0 if algo == "flow_grpo" else 9.0,
                    categories={"single": 0.8, "two": 0.6, "counting": 0.4, "colors": 0.7, "position": 0.3},
                )
    return run, write_sweep(root / "sweep", runs)


def timed(command: list[str], repeats: int) -> tuple[float, float, float]:
    """Wall-clock min and median, and the minimum CPU time (user + system) of the command's process."""
    times, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return min(times), statistics.median(times), min(cpu)


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env_note = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "?")
    print(f"machine: {model} ({platform.machine()}), {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"load average before: {os.getloadavg()[0]:.2f}; {env_note}")
    with tempfile.TemporaryDirectory() as directory:
        run, sweep = build(Path(directory))
        cli = [sys.executable, "-c", "from creditzoo.cli import main; main()", "analyze"]
        cases = {
            "python -c 'import creditzoo.cli' (start-up alone)": [sys.executable, "-c", "import creditzoo.cli"],
            "turning-points, 40-iteration run": [*cli, "turning-points", str(run)],
            "compare, 36-run sweep": [*cli, "compare", str(sweep)],
            "robustness, 40-iteration run (5 noise levels x 8 repeats x 4 algorithms)": [*cli, "robustness", str(run)],
            "robustness, 36-run sweep (same, plus the noise-sweep figure)": [*cli, "robustness", str(sweep)],
        }
        print("| command | wall min (s) | wall median (s) | CPU time min (s) |\n|---|---|---|---|")
        for name, command in cases.items():
            low, median, cpu = timed(command, args.repeats)
            print(f"| {name} | {low:.2f} | {median:.2f} | {cpu:.2f} |")
        print()
        print("| phase, in process | CPU time min (s) |\n|---|---|")
        for name, seconds in phases(run, sweep, args.repeats).items():
            print(f"| {name} | {seconds:.2f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def phases(run: Path, sweep: Path, repeats: int) -> dict[str, float]:
    """CPU time of each library phase in this process (imports already paid), the minimum over ``repeats``."""
    from creditzoo.analysis import load_records
    from creditzoo.analysis.compare import compare_runs
    from creditzoo.analysis.robustness import DEFAULT_NOISE, counterfactual_study, parse_noise_list
    from creditzoo.analysis.runs import expand_run_dirs, load_run
    from creditzoo.analysis.turning_points import turning_point_report

    start = time.process_time()
    from creditzoo.analysis import plots

    timings = {"import creditzoo.analysis.plots (matplotlib, seaborn)": time.process_time() - start}
    steps = {
        "turning points: read 40 records + all four variants": lambda: turning_point_report(load_records(run)),
        "compare: read 36 runs + groups, curves, bootstrap (1000)": lambda: compare_runs(
            [load_run(path) for path in expand_run_dirs([sweep])]
        ),
        "robustness: counterfactual study alone (5 x 8 x 4)": lambda: counterfactual_study(
            load_records(run), parse_noise_list(DEFAULT_NOISE)
        ),
    }
    results = {}
    for name, step in steps.items():
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            results[name] = step()
            best = min(best, time.process_time() - start)
        timings[name] = best
    with tempfile.TemporaryDirectory() as out:
        figures = {
            "turning-points figures (4 PNGs)": lambda: plots.turning_point_figures(
                results["turning points: read 40 records + all four variants"], Path(out)
            ),
            "compare figures (3 PNGs)": lambda: plots.compare_figures(
                results["compare: read 36 runs + groups, curves, bootstrap (1000)"], Path(out)
            ),
        }
        for name, step in figures.items():
            best = float("inf")
            for _ in range(repeats):
                start = time.process_time()
                step()
                best = min(best, time.process_time() - start)
            timings[name] = best
    return timings


if __name__ == "__main__":
    main()
