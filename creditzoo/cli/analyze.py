"""``creditzoo analyze turning-points | compare | robustness``: studies of what runs recorded (nothing is sampled).

Each command prints a table, writes a JSON file and PNG figures into ``analysis/`` inside its input (or ``--out``),
and with ``--json`` prints the JSON instead of the table. Plotting (seaborn) is imported inside the commands.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from creditzoo.cli.app import app, error_console, fail

analyze_app = typer.Typer(
    name="analyze",
    help="Studies of finished runs: turning points, comparisons across seeds, robustness to reward noise.",
    no_args_is_help=True,
)
app.add_typer(analyze_app, name="analyze")

OUT_HELP = "directory for the JSON and PNG files (default: analysis/ inside the input)"


def _check_out(out: Path | None, inputs: list[Path]) -> None:
    """Raise a one-line ValueError unless the output directory can be written: checked before the analysis runs."""
    from creditzoo.analysis.runs import default_out_dir
    from creditzoo.learner.preflight import check_writable

    check_writable(out if out is not None else default_out_dir(inputs), "--out" if out is not None else "directory")


def _out_dir(out: Path | None, inputs: list[Path]) -> Path:
    from creditzoo.analysis.runs import default_out_dir

    path = out if out is not None else default_out_dir(inputs)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"cannot write to {str(path)!r}: {error.strerror}")
    return path


def _emit(result: dict, path: Path, as_json: bool) -> bool:
    """Write ``result`` to ``path``; print it and return True with ``--json``."""
    text = json.dumps(result, indent=2)
    path.write_text(text + "\n")
    if as_json:
        typer.echo(text)
    return as_json


def _console() -> Console:
    """Standard output; wide when it is not a terminal (pipes, logs), so that tables keep their columns."""
    console = Console(markup=False, emoji=False)  # run names and paths are printed literally
    return console if console.is_terminal else Console(width=200, markup=False, emoji=False)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------------------------- turning points


@analyze_app.command("turning-points")
def turning_points_command(
    run_dir: Path = typer.Argument(..., help="a run directory written by creditzoo train"),
    clean: bool = typer.Option(
        False, "--clean", help="replay on the clean rewards instead of the trained (noisy) ones"
    ),
    out: Path | None = typer.Option(None, "--out", help=OUT_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the JSON instead of the table"),
) -> None:
    """Turning points of every TP-GRPO variant, replayed on a run's recorded rollouts."""
    from creditzoo.analysis import load_records
    from creditzoo.analysis.runs import read_config
    from creditzoo.analysis.turning_points import turning_point_report

    try:
        config = read_config(run_dir)
        _check_out(out, [run_dir])
        records = load_records(run_dir)
        report = turning_point_report(records, clean=clean, config=config)
    except ValueError as error:
        fail(str(error))
    from creditzoo.analysis.plots import turning_point_figures

    destination = _out_dir(out, [run_dir])
    figures = turning_point_figures(report, destination)
    result = {"run_dir": str(run_dir), **asdict(report), "figures": [p.name for p in figures]}
    if not _emit(result, destination / "turning_points.json", as_json):
        _print_turning_points(report, run_dir, destination, figures)


def _print_turning_points(report, run_dir: Path, destination: Path, figures: list) -> None:
    table = Table(title=f"Turning points in {run_dir} ({len(report.iterations)} iterations, K = {report.steps})")
    for column in ("variant", "TPs", "rate", "at step 0", "positive", "negative", "removed by balancing", "per traj."):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, v in report.variants.items():
        table.add_row(
            name,
            str(v.total),
            _pct(v.rate),
            _pct(v.initial_share),
            str(v.positive),
            str(v.negative),
            f"{v.removed_by_balancing} of {v.before_balancing}",
            _num(v.mean_per_trajectory, 2),
        )
    _console().print(table)
    _console().print(
        f"{report.rewards} rewards, {report.trajectories} trajectories: increments d_k exactly zero "
        f"{_pct(report.zero_increment_share)}, trajectories with no overall trend (R_K == R_0) "
        f"{_pct(report.no_trend_share)}"
    )
    if report.recorded_matches_replay is not None:
        _console().print(
            f"replayed {report.recorded_algo} equals the recorded turning points: {report.recorded_matches_replay}"
        )
    agreement = Table(title="Pairwise agreement")
    for column in ("variant", "variant", "Jaccard", "steps marked equally"):
        agreement.add_column(column)
    for pair in report.agreement:
        agreement.add_row(pair.first, pair.second, _num(pair.jaccard), _pct(pair.equal_share))
    _console().print(agreement)
    _console().print(f"wrote {destination / 'turning_points.json'} and {len(figures)} figures", highlight=False)


# ----------------------------------------------------------------------------------------------- robustness


@analyze_app.command("robustness")
def robustness_command(
    run_dir: Path = typer.Argument(..., help="a run directory, or a sweep directory trained at several noise levels"),
    noise: list[str] = typer.Option(
        [], "--noise", help="noise model to inject, e.g. gaussian:0.05 (repeat; default gaussian at 0..0.1)"
    ),
    repeats: int = typer.Option(8, "--repeats", help="noisy copies drawn per noise model"),
    algo: list[str] = typer.Option(
        ["flow_grpo", "incremental", "tp_grpo", "tp_grpo_strict"], "--algo", help="algorithms to replay (repeat)"
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the noise draws"),
    theory: bool = typer.Option(
        True,
        "--theory/--no-theory",
        help="set the Gaussian-noise theory's flips and turning points beside the measured",
    ),
    metric: str | None = typer.Option(
        None, "--metric", help="test metric of the sweep figure [default: the task's primary, e.g. test_partial_score]"
    ),
    out: Path | None = typer.Option(None, "--out", help=OUT_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the JSON instead of the table"),
) -> None:
    """What reward noise does to each algorithm's credit (counterfactual on recorded clean rewards)."""
    from creditzoo.analysis import compare_credit, load_records
    from creditzoo.analysis.robustness import (
        DEFAULT_NOISE,
        counterfactual_study,
        noise_sweep_scores,
        parse_noise_list,
        theory_applies,
        theory_comparison,
    )
    from creditzoo.analysis.runs import expand_run_dirs, is_sweep, load_run, read_config, run_task, split_finished

    try:
        specs = parse_noise_list(noise or list(DEFAULT_NOISE))
        sweep, source, skipped = None, run_dir, []
        if is_sweep(run_dir):
            runs, skipped = split_finished([load_run(path) for path in expand_run_dirs([run_dir])])
            metric = metric or run_task(runs).primary.test_key
            sweep = noise_sweep_scores(runs, metric=metric)
            run_dir = _counterfactual_run(runs)
        else:
            read_config(run_dir)
        _check_out(out, [source])
        records = load_records(run_dir)
        effects = counterfactual_study(records, specs, algos=algo, repeats=repeats, seed=seed)
        recorded = {name: compare_credit(records, name) for name in algo}
        applies = theory and theory_applies(records)  # chains with completion rewards
        rows = theory_comparison(records, specs, algos=algo, repeats=repeats, seed=seed) if applies else []
    except ValueError as error:
        fail(str(error))
    from creditzoo.analysis.plots import noise_sweep_figure, robustness_figures, theory_figures

    destination = _out_dir(out, [source])
    rates = {
        name: {"noisy": c.tp_rate_noisy, "clean": c.tp_rate_clean}
        for name, c in recorded.items()
        if any(c.tp_rate_clean)
    }
    figures = robustness_figures(effects, destination, clean_rates=rates)
    if sweep is not None:
        figures.append(noise_sweep_figure(sweep, destination, metric=metric))
    figures += theory_figures(rows, destination)
    result = {
        "counterfactual_run": str(run_dir),
        "iterations": len(records),
        "counterfactual": [asdict(e) for e in effects],
        "recorded_noisy_vs_clean": {name: asdict(c) for name, c in recorded.items()},
        "noise_sweep": None if sweep is None else [asdict(s) for s in sweep],
        "theory": [asdict(row) for row in rows],
        "skipped": skipped,
        "figures": [p.name for p in figures],
    }
    if not _emit(result, destination / "robustness.json", as_json):
        title = f"Counterfactual reward noise on {run_dir} ({len(records)} iterations, {repeats} repeats)"
        _print_theory(rows)
        _print_robustness(effects, sweep, title=title, metric=metric, written=f"{destination / 'robustness.json'}")


def _print_robustness(effects: list, sweep: list | None, *, title: str, metric: str | None, written: str) -> None:
    table = Table(title=title)
    for column in (
        "noise",
        "algorithm",
        "TP precision",
        "TP recall",
        "d_k sign flips",
        "adv. Spearman",
        "adv. sign agr.",
    ):
        table.add_column(column, justify="left" if column in ("noise", "algorithm") else "right")
    for e in effects:
        table.add_row(
            e.noise,
            e.algo,
            _num(e.tp_precision and e.tp_precision.mean),
            _num(e.tp_recall and e.tp_recall.mean),
            _pct(e.increment_sign_change and e.increment_sign_change.mean),  # None: no chains, no d_k
            _num(e.advantage_spearman and e.advantage_spearman.mean),
            _pct(e.advantage_sign_agreement.mean),
        )
    _console().print(table)
    if sweep is not None:
        scores = Table(title=f"Final {metric} vs training reward noise (95% t interval over seeds)")
        for column in ("algorithm", "reward noise", "seeds", "final score", "per seed"):
            scores.add_column(column)
        for s in sweep:
            score = f"{s.score.mean:.4f} [{s.score.low:.4f}, {s.score.high:.4f}]"
            scores.add_row(s.algo, s.noise, str(s.seeds), score, ", ".join(f"{v:.3f}" for v in s.score.values))
        _console().print(scores)
    _console().print(f"wrote {written} and its figures", highlight=False)


def _estimate_text(estimate) -> str:
    return "n/a" if estimate is None else f"{estimate.mean:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"


def _print_theory(rows: list) -> None:
    """Predicted beside measured, per noise level and step: the increments' table, then one table per rule."""
    if not rows:
        return
    cell = {(r.noise, r.step, r.subject, r.quantity): r for r in rows}
    levels = list(dict.fromkeys((r.noise, r.step) for r in rows))
    note = "predicted: docs/math.md section 8.1; measured: mean over repeats [95% t interval]"
    table = Table(title=f"Increment sign flips under Gaussian noise ({note})")
    for column in ("noise", "step", "ties", "flips pred.", "flips meas. (untied)", "changes pred.", "changes meas."):
        table.add_column(column, justify="left" if column == "noise" else "right")
    for noise, step in levels:
        flip, change = cell[(noise, step, "increments", "flip_rate")], cell[(noise, step, "increments", "sign_change")]
        table.add_row(
            noise,
            "all" if step is None else str(step),
            _pct(cell[(noise, step, "increments", "tie_share")].predicted),
            _num(flip.predicted),
            _estimate_text(flip.measured),
            _num(change.predicted),
            _estimate_text(change.measured),
        )
    _console().print(table)
    for rule in dict.fromkeys(r.subject for r in rows if r.subject.startswith("rule:")):
        name = rule.removeprefix("rule:")
        credited = name in {r.subject for r in rows}
        table = Table(title=f"Turning points of {name}'s rule before balancing ({note})")
        columns = ["noise", "step", "marked pred.", "marked meas.", "precision pred.", "precision meas."]
        columns += ["recall pred.", "recall meas."] + (["precision credited", "recall credited"] if credited else [])
        for column in columns:
            table.add_column(column, justify="left" if column == "noise" else "right")
        for noise, step in levels:
            marked, precision, recall = (cell[(noise, step, rule, q)] for q in ("mark_rate", "precision", "recall"))
            values = [noise, "all" if step is None else str(step), _num(marked.predicted)]
            values += [_estimate_text(marked.measured), _num(precision.predicted), _estimate_text(precision.measured)]
            values += [_num(recall.predicted), _estimate_text(recall.measured)]
            if credited:
                values += [_estimate_text(cell[(noise, step, name, q)].measured) for q in ("precision", "recall")]
            table.add_row(*values)
        _console().print(table)


def _counterfactual_run(runs: list) -> Path:
    """The sweep's run the counterfactual study replays: the first noise-free run that recorded completion rewards."""
    from creditzoo.analysis.credit import read_record

    def has_completions(run) -> bool:
        first = sorted(run.path.glob("rollouts/iter_*.safetensors"))[:1]
        return bool(first) and read_record(first[0]).has_completions

    ordered = sorted(runs, key=lambda run: bool(run.config.get("reward_noise")))  # noise-free runs first (stable)
    for run in ordered:
        if has_completions(run):
            return run.path
    raise ValueError("no run of this sweep recorded completion rewards (all flow_grpo?): nothing to inject noise into")


# ----------------------------------------------------------------------------------------------- compare


PANELS = ("iterations", "model_evals", "seconds", "train")
"""Learning-curve panels ``--panels`` can ask for (default: iterations and model_evals)."""


@analyze_app.command("compare")
def compare_command(
    dirs: list[Path] = typer.Argument(..., help="run directories, or a sweep directory"),
    baseline: str = typer.Option("flow_grpo", "--baseline", help="baseline group: an algorithm or a group label"),
    threshold: float | None = typer.Option(
        None, "--threshold", help="test score to reach (default: the baseline's final mean test score)"
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="test metric of the verdicts, e.g. test_strict_accuracy [default: the task's primary, e.g. "
        "test_partial_score]",
    ),
    primary: str | None = typer.Option(
        None, "--primary", help="A:B, one contrast (group labels or algorithms) tested alone, outside Holm's family"
    ),
    budget: list[str] = typer.Option(
        [], "--budget", help="cost axis to match budgets on (repeat; default: model_evals, reward_calls, seconds)"
    ),
    last_k: int = typer.Option(3, "--last-k", help="mean of the last K test evaluations"),
    alpha: float = typer.Option(0.05, "--alpha", help="level at which a verdict calls a difference established"),
    label: list[str] = typer.Option(
        [],
        "--label",
        help="NAME=TEXT: display TEXT for a group (its label, display name or algorithm; NAME may hold '=')",
    ),
    panels: list[str] = typer.Option(
        [], "--panels", help="learning-curve panels: iterations, model_evals, seconds, train (repeat)"
    ),
    resamples: int = typer.Option(1000, "--resamples", help="bootstrap resamples"),
    seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
    out: Path | None = typer.Option(None, "--out", help=OUT_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the JSON instead of the table"),
) -> None:
    """Compare groups of runs (configuration minus seed): verdicts, intervals, budgets, curves; report.md."""
    from creditzoo.analysis.compare import CompareOptions, compare_runs, group_runs, parse_labels
    from creditzoo.analysis.report import render_report
    from creditzoo.analysis.runs import expand_run_dirs, load_run, split_finished

    try:
        options = CompareOptions(
            baseline=baseline,
            metric=metric,
            threshold=threshold,
            primary=primary,
            budget_axes=tuple(budget) or None,
            last_k=last_k,
            alpha=alpha,
            resamples=resamples,
            seed=seed,
        )
        chosen = _parse_panels(panels)
        runs, skipped = split_finished([load_run(path) for path in expand_run_dirs(dirs)])
        _check_out(out, dirs)
        names = parse_labels(label, group_runs(runs)) if label and runs else {}
        comparison = compare_runs(runs, options, labels=names)
    except ValueError as error:
        fail(str(error))
    from creditzoo.analysis.plots import compare_figures

    destination = _out_dir(out, dirs)
    for warning in comparison.warnings:
        error_console.print(f"warning: {warning}", markup=False, highlight=False)
    figures = compare_figures(comparison, destination, panels=chosen)
    captions = {caption: path.name for caption, path in figures.items()}
    command = _compare_command_line(dirs, options, comparison.metric, label, panels)
    report = render_report(
        comparison, captions, title=f"Comparison of {len(runs)} runs", notes=skipped, command=command
    )
    (destination / "report.md").write_text(report)
    result = {**asdict(comparison), "skipped": skipped, "figures": list(captions.values()), "report": "report.md"}
    if not _emit(result, destination / "compare.json", as_json):
        _print_comparison(comparison, skipped, destination, figures)


def _parse_panels(items: list[str]) -> tuple[str, ...]:
    """The learning-curve panels asked for (default: iterations and model evaluations).

    Raises:
        ValueError: an unknown panel, listing the valid ones.
    """
    for item in items:
        if item not in PANELS:
            raise ValueError(f"unknown panel {item[:80]!r}; valid: {', '.join(PANELS)}")
    return tuple(dict.fromkeys(items)) or ("iterations", "model_evals")


def _print_comparison(comparison, skipped: list[str], destination: Path, figures: dict) -> None:
    from creditzoo.analysis.report import established

    table = Table(title=f"{comparison.metric}: {comparison.scores_source}")
    guards = [m for m in comparison.metrics if m != comparison.metric]
    columns = ["group", "seeds", "mean [95% CI]", "per seed", "diff [95% CI]", "p (Holm)", "holds", *guards]
    for column in columns:
        table.add_column(column.removeprefix("test_"), justify="left" if column == "group" else "right")
    for g in comparison.groups:
        c = g.contrast
        table.add_row(
            g.name,
            str(len(g.runs)),
            f"{g.final.mean:.4f} [{g.final.low:.4f}, {g.final.high:.4f}]",
            ", ".join(f"{v:.3f}" for v in g.final.values),
            "baseline" if c is None else f"{c.difference:+.4f} [{_num(c.low, 4)}, {_num(c.high, 4)}]",
            "" if c is None else _num(c.p_adjusted, 4),
            "" if c is None else ("yes" if established(c, comparison.alpha) else "no"),
            *[_num(g.guards[m] and g.guards[m].mean) for m in guards],
        )
    _console().print(table)
    for note in skipped:
        _console().print(note, highlight=False, markup=False)
    _console().print(f"wrote {destination / 'report.md'}, compare.json and {len(figures)} figures", highlight=False)


def _compare_command_line(dirs: list[Path], options, metric: str, labels: list[str], panels: list[str]) -> str:
    """The command that reproduces a comparison (quoted in its report), ``metric`` the one it was about."""
    import shlex

    words = ["creditzoo", "analyze", "compare", *map(str, dirs), "--baseline", options.baseline]
    words += ["--metric", metric]
    words += [] if options.threshold is None else ["--threshold", str(options.threshold)]
    words += [] if options.primary is None else ["--primary", options.primary]
    for axis in options.budget_axes or ():
        words += ["--budget", axis]
    words += ["--last-k", str(options.last_k), "--alpha", str(options.alpha)]
    for item in labels:
        words += ["--label", item]
    for item in panels:
        words += ["--panels", item]
    words += ["--resamples", str(options.resamples), "--seed", str(options.seed)]
    return shlex.join(words)
