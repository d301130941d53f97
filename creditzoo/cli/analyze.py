"""``creditzoo analyze``: replay algorithms on a finished run's rollout records."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from creditzoo.cli.app import app, fail


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@app.command("analyze")
def analyze_command(
    run_dir: Path = typer.Argument(..., help="a run directory written by creditzoo train"),
    algo: list[str] = typer.Option(
        ["tp_grpo", "tp_grpo_strict"], help="algorithms to replay (repeat the option for several)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of lines"),
) -> None:
    """Turning-point rates per step, and what reward noise changed, for each algorithm on a run's records."""
    from creditzoo.analysis import compare_credit, load_records

    try:
        records = load_records(run_dir)
        results = {name: asdict(compare_credit(records, name)) for name in algo}
    except ValueError as error:
        fail(str(error))
    if as_json:
        typer.echo(json.dumps({"iterations": len(records), "algorithms": results}))
        return
    typer.echo(f"{run_dir}: {len(records)} iterations, {records[0].tensors['group_ids'].numel()} trajectories each")
    for name, result in results.items():
        rates = " ".join(f"{x:.3f}" for x in result["tp_rate_noisy"])
        typer.echo(f"{name:<22} tp rate per step [{rates}]")
        typer.echo(
            f"{'':<22} noisy vs clean: tp jaccard {result['tp_jaccard']:.3f}, "
            f"advantage sign agreement {result['advantage_sign_agreement']:.3f}, "
            f"zero increments {_fmt(result['zero_increment_rate'])}"
        )
