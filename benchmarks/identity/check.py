"""Bit-identity of fixed-seed tiny runs between two commits: one algorithm per rollout shape and more.

Run (from a checkout whose virtual environment has creditzoo's dependencies installed; ``--cases`` picks cases, e.g.
the first five for a commit older than ``--reward-repeats`` and ``split_noise``):

    OMP_WAIT_POLICY=PASSIVE python benchmarks/identity/check.py BEFORE AFTER [--jobs 2] [--keep]

BEFORE and AFTER are commits (``main``, ``HEAD``, a hash). The script checks each out as a detached git worktree
under a temporary folder, installs nothing: every run is ``python -m creditzoo train ...`` of the running
interpreter with ``PYTHONPATH`` set to that worktree (the script refuses to compare if ``creditzoo`` was imported
from anywhere else), one torch thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)`` and one inter-op
thread) on the CPU. Every case runs once per commit and the two run directories are compared:

- ``metrics.jsonl``: every line, every field exactly, except the wall times (``seconds``);
- ``rollouts/*.safetensors``: the same tensors by name, each ``torch.equal``, and the same metadata;
- ``eval/*.json``: exactly (no field there is a timing);
- the last checkpoint's ``adapter_model.safetensors``: every LoRA tensor ``torch.equal``;
- ``config.json`` without its provenance (which names the commit).

It prints one line per case and exits 0 when every case is identical, 1 otherwise (naming the first difference).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors import safe_open

TINY = ["--env", "geneval", "--iterations", "2", "--prompts-per-iteration", "2", "--steps", "4"]
TINY += ["--lora-rank", "2", "--lr", "0.01", "--clip-range", "0.2", "--seed", "3"]
TINY += ["--eval-every", "1", "--eval-steps", "2", "--eval-samples-per-prompt", "1"]
TINY += ["--eval-min-images-per-category", "2", "--final-eval-steps", "2", "--final-eval-samples", "1"]

CASES: dict[str, list[str]] = {
    # chain: completions R_0 .. R_K on an ode:2 sub-grid, a KL term
    "tp_grpo_strict": ["--algo", "tp_grpo_strict", "--group-size", "2", "--completion", "ode:2", "--beta", "0.05"],
    # chain without completions, on a shorter window
    "flow_grpo": ["--algo", "flow_grpo", "--group-size", "3", "--window", "2", "--window-start", "1"],
    # anchor: one completion per child, noisy rewards (noisy and clean twins recorded)
    "tempflow": ["--algo", "tempflow", "--group-size", "2", "--reward-noise", "gaussian:0.05"],
    # anchor: the default granularities (1, 2), two completions per child
    "g2rpo": ["--algo", "g2rpo", "--group-size", "2"],
    # tree: the default split steps (0, 2) of K = 3, so 4 leaves a group
    "branch_grpo": ["--algo", "branch_grpo"],
    # tree: the paper's correlated sibling noise and path fusion (algo_options from CONFIGS)
    "branch_grpo_paper": ["--algo", "branch_grpo"],
    # chain, noise-aware: two reward calls per image, the per-image variances pooled into the scheme's noise SD
    "tp_margin_repeats": ["--algo", "tp_margin", "--group-size", "2", "--reward-noise", "gaussian:0.05"]
    + ["--reward-repeats", "2", "--reward-noise-sd", "auto"],
}

CONFIGS: dict[str, str] = {
    "branch_grpo_paper": 'algo_options = { split_steps = [0, 1], split_noise = "paper:0.5", fusion = "path" }\n',
}
"""TOML files (``--config``) of the cases that need algorithm options, which have no command-line option."""

TIMING_FIELDS = ("seconds",)
"""Fields that hold wall times, left out of the comparison."""

LAUNCH = (
    "import runpy, sys, torch; torch.set_num_threads(1); torch.set_num_interop_threads(1); "
    "import creditzoo; expected = sys.argv.pop(1); "
    "assert creditzoo.__file__.startswith(expected), f'creditzoo imported from {creditzoo.__file__}, not {expected}'; "
    "sys.argv[0] = 'creditzoo'; runpy.run_module('creditzoo', run_name='__main__')"
)


def git(*args: str, cwd: Path) -> str:
    """Run git in ``cwd`` and return its stripped output."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def run_case(tree: Path, name: str, out: Path) -> Path:
    """Train case ``name`` with the creditzoo of worktree ``tree`` into ``out/name``; return the run directory."""
    run_dir = out / name
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.update({"HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE", "CUDA_VISIBLE_DEVICES": ""})
    command = [sys.executable, "-c", LAUNCH, str(tree / "creditzoo"), "train", *TINY, *CASES[name]]
    command += ["--device", "cpu", "--run-dir", str(run_dir)]
    if name in CONFIGS:
        (out / f"{name}.toml").write_text(CONFIGS[name])
        command += ["--config", str(out / f"{name}.toml")]
    result = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True)
    (out / f"{name}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-1:]
        raise RuntimeError(f"{name} at {tree.name} failed (exit {result.returncode}): {' '.join(tail)}")
    return run_dir


def without_timings(value: object) -> object:
    """``value`` with every ``seconds`` field removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def first_json_difference(a: object, b: object, where: str) -> str | None:
    """The path of the first difference between two JSON values (exact float equality), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where}: keys differ ({sorted(set(a) ^ set(b))})"
        return next((d for k in a if (d := first_json_difference(a[k], b[k], f"{where}.{k}"))), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: lengths {len(a)} and {len(b)}"
        pairs = enumerate(zip(a, b, strict=True))
        return next((d for i, (x, y) in pairs if (d := first_json_difference(x, y, f"{where}[{i}]"))), None)
    return None if a == b and type(a) is type(b) else f"{where}: {a!r} != {b!r}"


def tensor_difference(a: Path, b: Path) -> str | None:
    """The first difference between two safetensors files (names, metadata, dtype, values), or None."""
    with safe_open(str(a), "pt") as left, safe_open(str(b), "pt") as right:
        if (left.metadata() or {}) != (right.metadata() or {}):
            return f"{a.name}: metadata differs"
        if set(left.keys()) != set(right.keys()):
            return f"{a.name}: tensors {sorted(set(left.keys()) ^ set(right.keys()))} in one file only"
        for key in left.keys():  # noqa: SIM118 (safe_open is not a mapping)
            x, y = left.get_tensor(key), right.get_tensor(key)
            if x.dtype != y.dtype or not torch.equal(x, y):
                return f"{a.name}: tensor {key} differs"
    return None


def compare(before: Path, after: Path) -> tuple[str | None, int]:
    """The first difference between two run directories (or None) and the number of tensor files compared."""
    lines = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (before, after)]
    difference = first_json_difference(without_timings(lines[0]), without_timings(lines[1]), "metrics.jsonl")
    if difference:
        return difference, 0
    configs = [json.loads((d / "config.json").read_text()) for d in (before, after)]
    for config in configs:
        config.pop("provenance", None)
    if difference := first_json_difference(configs[0], configs[1], "config.json"):
        return difference, 0
    files = {}
    for pattern in ("rollouts/*.safetensors", "eval/*.json", "checkpoints/iter_*/adapter_model.safetensors"):
        names = [sorted(p.relative_to(d) for p in d.glob(pattern)) for d in (before, after)]
        if names[0] != names[1] or not names[0]:
            return f"{pattern}: files differ ({[str(n) for n in names[0]]} vs {[str(n) for n in names[1]]})", 0
        files[pattern] = names[0]
    compared = 0
    for names in files.values():
        for name in names:
            if name.suffix == ".json":
                a, b = (json.loads((d / name).read_text()) for d in (before, after))
                difference = first_json_difference(a, b, str(name))
            else:
                difference = tensor_difference(before / name, after / name)
                compared += 1
            if difference:
                return difference, compared
    return None, compared


def main() -> int:
    """Check out both commits, run every case in both, compare; exit 0 when all are identical."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="commit of the reference runs, e.g. main")
    parser.add_argument("after", help="commit of the runs compared with them, e.g. HEAD")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each on one thread)")
    parser.add_argument("--keep", action="store_true", help="keep the worktrees and run directories")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES), help="cases to run")
    args = parser.parse_args()
    repo = Path(git("rev-parse", "--show-toplevel", cwd=Path(__file__).resolve().parent))
    commits = [git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=repo) for ref in (args.before, args.after)]
    root = Path(tempfile.mkdtemp(prefix="creditzoo-identity-"))
    trees = [root / f"{label}-{commit[:10]}" for label, commit in zip(("before", "after"), commits, strict=True)]
    print(f"before {args.before} = {commits[0]}\nafter  {args.after} = {commits[1]}\nin {root}", flush=True)
    for tree, commit in zip(trees, commits, strict=True):
        git("worktree", "add", "--detach", str(tree), commit, cwd=repo)
        (tree / "runs").mkdir()
    failures = 0
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            jobs = {(name, i): pool.submit(run_case, tree, name, tree / "runs") for name in args.cases
                    for i, tree in enumerate(trees)}  # fmt: skip
            for name in args.cases:
                try:
                    before, after = jobs[(name, 0)].result(), jobs[(name, 1)].result()
                except RuntimeError as error:
                    print(f"{name:16s} FAILED TO RUN: {error}", flush=True)
                    failures += 1
                    continue
                difference, tensors = compare(before, after)
                if difference:
                    failures += 1
                    print(f"{name:16s} DIFFERENT: {difference}", flush=True)
                else:
                    print(f"{name:16s} identical (metrics, config, eval, {tensors} tensor files)", flush=True)
    finally:
        if not args.keep:
            for tree in trees:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=repo, capture_output=True)
            subprocess.run(["rm", "-rf", str(root)], check=False)
    print("all identical" if failures == 0 else f"{failures} case(s) differ or failed", flush=True)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
