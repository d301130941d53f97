"""A study's table from what its runs recorded (metrics.jsonl, config.json); samples nothing.

Usage: ``python3 studies/table.py SWEEP_DIR [SWEEP_DIR ...]``. One row per (algorithm, reward noise, completion,
group size, advantage std mode) over seeds: the final test partial score per seed and its mean, the mean gain over
the base model, the clean training reward of the last five iterations, the final share of test images with more
objects than the prompt names (where the task's scorer reports it), and the model evaluations and reward calls per
iteration (means over all iterations and seeds). Only finished runs count (the last metrics line at the configured
iteration).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def rows(sweeps: list[Path]) -> dict[tuple, list[dict]]:
    """Finished runs of the sweeps, grouped by the settings that tell the table's rows apart."""
    groups: dict[tuple, list[dict]] = {}
    for sweep in sweeps:
        for run in sorted(sweep.glob("*-seed*")):
            config = json.loads((run / "config.json").read_text())
            lines = [json.loads(line) for line in open(run / "metrics.jsonl")]
            if lines[-1].get("iteration") != config["iterations"]:
                continue
            key = (
                config["algo"],
                config["reward_noise"] or "none",
                config["completion"],
                config["group_size"],
                config["std_mode"],
            )
            groups.setdefault(key, []).append({"seed": config["seed"], "lines": lines})
    return groups


def main(sweeps: list[Path]) -> None:
    """Print the markdown table of :func:`rows`."""
    print(
        "| scheme | reward noise | completion | group | std | seeds | final test partial, per seed | mean | gain "
        "| clean train reward, last 5 iterations | extra objects, final | model evals / iteration "
        "| reward calls / iteration |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    order = sorted(rows(sweeps).items(), key=lambda item: (item[0][0], item[0][1] != "none", *item[0][1:]))
    for (algo, noise, completion, group, std), runs in order:
        runs.sort(key=lambda run: run["seed"])
        finals = [run["lines"][-1]["test_partial_score"] for run in runs]
        gains = [final - run["lines"][0]["test_partial_score"] for final, run in zip(finals, runs, strict=True)]
        trained = [line for run in runs for line in run["lines"][1:]]
        late = [line["reward_clean_mean"] for run in runs for line in run["lines"][-5:]]
        extra = [run["lines"][-1].get("test_extra_object_rate") for run in runs]
        extra_text = "n/a" if None in extra else f"{statistics.mean(extra):.3f}"
        print(
            f"| {algo} | {noise} | {completion} | {group} | {std} | {len(runs)} "
            f"| {', '.join(f'{x:.3f}' for x in finals)} "
            f"| {statistics.mean(finals):.3f} | {statistics.mean(gains):+.3f} | {statistics.mean(late):.3f} "
            f"| {extra_text} | {statistics.mean(line['model_evals'] for line in trained):,.0f} "
            f"| {statistics.mean(line['reward_calls'] for line in trained):,.0f} |"
        )


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]])
