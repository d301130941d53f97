"""Time the embedded toy flow model: batch-64 forward (with and without guidance) and a 10-step SDE rollout.

Run: OMP_WAIT_POLICY=PASSIVE python benchmarks/toy_model.py [--repeats N] [--guidance-scale G] [--weights PATH]

Reports the minimum and median wall time over ``--repeats`` runs (CPU, float32, torch's thread count) and
the model-call budget of one default TP-GRPO iteration (64 trajectories, T = 10, K = 9, `ode` completions:
T + T(T+1)/2 - 1 = 64 model calls per trajectory, batched 64 at a time), plus a forward+backward at batch 64
(the cost of one trained step). Set ``OMP_WAIT_POLICY=PASSIVE`` on a shared machine: with libgomp's default
spinning, two busy processes on two cores slow each other down 10-20x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

import torch

from creditzoo.models.toy import DEFAULT_WEIGHTS, ToyFlowModel, load_geneval_model
from creditzoo.pretrain import default_model_config
from creditzoo.sampling import flow_sigmas, sde_step

BATCH = 64
STEPS = 10
CALLS_PER_TRAJECTORY = STEPS + STEPS * (STEPS + 1) // 2 - 1  # sampling + TP-GRPO `ode` completions


def timed(fn, repeats: int) -> tuple[float, float, float]:
    """(min wall, median wall, min process CPU) seconds of ``fn()`` over ``repeats`` runs after one warm-up.

    On a loaded machine the CPU time (summed over threads) is the steadier figure: alone, the wall time is
    roughly the CPU time divided by the thread count.
    """
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return min(walls), statistics.median(walls), min(cpus)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def rollout(model: ToyFlowModel, cond: dict, guidance_scale: float, generator: torch.Generator) -> torch.Tensor:
    """One 10-step Flow-GRPO SDE rollout of BATCH trajectories (log-probs recorded), no gradient."""
    sigmas = flow_sigmas(STEPS, 1.0)
    x = torch.randn(BATCH, *model.sample_shape, generator=generator)
    for i in range(STEPS):
        v = model.velocity(x, sigmas[i].expand(BATCH), cond, guidance_scale=guidance_scale)
        x = sde_step(v, x, sigmas[i], sigmas[i + 1], noise_level=0.7, generator=generator).prev_sample
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    parser.add_argument("--weights", default=None, help="toy safetensors (default: the shipped weights)")
    args = parser.parse_args()
    if args.weights is None and not DEFAULT_WEIGHTS.is_file():
        model = ToyFlowModel(default_model_config()).eval()  # timing only: untrained weights cost the same
    else:
        model = load_geneval_model(args.weights)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"toy model: {params:,} parameters\n")
    prompts = ["a red circle and a blue square", "three triangles", "a circle left of a square", "a triangle"]
    cond = model.encode_prompts([prompts[i % len(prompts)] for i in range(BATCH)])
    x = torch.randn(BATCH, *model.sample_shape)
    sigma = torch.full((BATCH,), 0.6)
    gen = torch.Generator().manual_seed(0)
    rows = []
    with torch.no_grad():
        for scale in (1.0, args.guidance_scale):
            times = timed(lambda s=scale: model.velocity(x, sigma, cond, guidance_scale=s), args.repeats)
            rows.append((f"forward, batch {BATCH}, guidance {scale:g}", *times))
        for scale in (1.0, args.guidance_scale):
            times = timed(lambda s=scale: rollout(model, cond, s, gen), max(args.repeats // 3, 2))
            rows.append((f"{STEPS}-step SDE rollout, {BATCH} trajectories, guidance {scale:g}", *times))

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        model.velocity(x, sigma, cond).square().mean().backward()

    rows.append((f"forward+backward, batch {BATCH}, guidance 1", *timed(train_step, max(args.repeats // 2, 2))))
    print("| measurement | wall min (s) | wall median (s) | CPU time min (s) |\n|---|---|---|---|")
    for name, best, med, cpu in rows:
        print(f"| {name} | {best:.3f} | {med:.3f} | {cpu:.3f} |")
    forward = {1.0: rows[0][1], args.guidance_scale: rows[1][1]}
    print(
        f"\none TP-GRPO iteration (64 trajectories, T={STEPS}, `ode` completions) = {CALLS_PER_TRAJECTORY} "
        f"batch-64 model calls: {CALLS_PER_TRAJECTORY * forward[1.0]:.1f} s without guidance, "
        f"{CALLS_PER_TRAJECTORY * forward[args.guidance_scale]:.1f} s with guidance {args.guidance_scale:g} "
        f"(min times; plus {STEPS - 1} trained steps of forward+backward)"
    )


if __name__ == "__main__":
    main()
