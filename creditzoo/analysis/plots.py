"""Figures of the studies, as PNG files: the only module that imports seaborn and matplotlib (Agg backend).

Each function takes a study's result (see :mod:`creditzoo.analysis.turning_points`, :mod:`.compare`,
:mod:`.robustness`), writes its figures into a directory and returns their paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from creditzoo.analysis.compare import KEY_NAMES, Comparison, short_label  # noqa: E402
from creditzoo.analysis.robustness import NoiseEffect, NoiseScore, TheoryRow  # noqa: E402
from creditzoo.analysis.stats import Estimate  # noqa: E402
from creditzoo.analysis.turning_points import TurningPointReport  # noqa: E402

DPI = 110
AXIS_NAMES = {"iterations": "iterations", "model_evals": "model evaluations", "seconds": "wall-clock seconds"}


def _save(figure: plt.Figure, path: Path, *, rect: tuple[float, float, float, float] | None = None) -> Path:
    """Lay ``figure`` out (within ``rect``, figure coordinates, when room is kept for a figure legend), write, close."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout(rect=rect)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return path


def _palette(count: int) -> list:
    """Distinct colours: seaborn's "deep" up to 10, "tab20" up to 20, "husl" beyond."""
    return sns.color_palette("deep" if count <= 10 else "tab20" if count <= 20 else "husl", count)


def _theme() -> None:
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)


def _grid(count: int, columns: int, size: tuple[float, float]) -> tuple[plt.Figure, np.ndarray]:
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return figure, axes.flatten()


# ----------------------------------------------------------------------------------------------- turning points


def turning_point_figures(report: TurningPointReport, out_dir: Path) -> list[Path]:
    """Step x iteration heatmaps, rate per step, turning points per trajectory, and variant agreement.

    Returns:
        The PNG paths: ``turning_points_heatmap.png``, ``turning_points_per_step.png``,
        ``turning_points_per_trajectory.png``, ``turning_points_agreement.png``.
    """
    _theme()
    names = list(report.variants)
    paths = []
    figure, axes = _grid(len(names), 2, (6.0, 3.6))
    peak = max((max(map(max, v.heatmap)) for v in report.variants.values()), default=1.0) or 1.0
    for ax, name in zip(axes, names, strict=False):
        heat = np.array(report.variants[name].heatmap)  # [K, I]
        # one raster per panel (imshow) instead of a mesh of K x I patches
        image = ax.imshow(heat, aspect="auto", cmap="rocket_r", vmin=0, vmax=peak, interpolation="nearest")
        ax.grid(False)
        figure.colorbar(image, ax=ax, label="share of trajectories")
        columns = range(0, len(report.iterations), max(1, len(report.iterations) // 8))
        ax.set_xticks(list(columns), [str(report.iterations[c]) for c in columns])
        ax.set_yticks(range(report.steps), [str(k) for k in range(report.steps)])
        ax.set_title(f"{name}: turning points per step and iteration")
        ax.set_xlabel("iteration")
        ax.set_ylabel("window step k")
    paths.append(_save(figure, out_dir / "turning_points_heatmap.png"))

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    palette = _palette(len(names))
    for color, name in zip(palette, names, strict=True):
        v = report.variants[name]
        left.plot(range(report.steps), v.rate_per_step, marker="o", color=color, label=name)
        right.plot(report.iterations, v.rate_per_iteration, marker=".", color=color, label=name)
    left.set(xlabel="window step k", ylabel="turning-point rate", title="per step (all iterations)")
    right.set(xlabel="iteration", ylabel="turning-point rate", title="per iteration (all steps)")
    left.legend()
    paths.append(_save(figure, out_dir / "turning_points_per_step.png"))

    figure, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(names)
    longest = max(max(np.nonzero(v.per_trajectory)[0], default=0) for v in report.variants.values()) + 1
    for i, (color, name) in enumerate(zip(palette, names, strict=True)):
        counts = np.array(report.variants[name].per_trajectory[:longest], dtype=float)
        share = counts / max(counts.sum(), 1.0)
        ax.bar(np.arange(len(share)) + (i - (len(names) - 1) / 2) * width, share, width, color=color, label=name)
    ax.set(
        xlabel="turning points in a trajectory", ylabel="share of trajectories", title="turning points per trajectory"
    )
    ax.legend()
    paths.append(_save(figure, out_dir / "turning_points_per_trajectory.png"))

    matrix = np.eye(len(names))
    for pair in report.agreement:
        i, j = names.index(pair.first), names.index(pair.second)
        matrix[i, j] = matrix[j, i] = pair.jaccard
    figure, ax = plt.subplots(figsize=(6.5, 5))
    sns.heatmap(matrix, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="mako", xticklabels=names, yticklabels=names, ax=ax)
    ax.set_xticklabels(names, rotation=25, ha="right")
    ax.set_title("Jaccard overlap of turning-point sets")
    paths.append(_save(figure, out_dir / "turning_points_agreement.png"))
    return paths


# ----------------------------------------------------------------------------------------------- robustness

METRICS = {
    "tp_precision": "turning-point precision",
    "tp_recall": "turning-point recall",
    "increment_sign_change": "increment sign-change rate",
    "advantage_spearman": "advantage Spearman vs clean",
    "advantage_sign_agreement": "advantage sign agreement",
}


def robustness_figures(
    effects: list[NoiseEffect], out_dir: Path, *, clean_rates: dict[str, dict[str, list[float]]] | None = None
) -> list[Path]:
    """Counterfactual curves against the noise level, one PNG per noise kind (``robustness_<kind>.png``).

    Args:
        effects: the counterfactual study's results.
        out_dir: where to write.
        clean_rates: optional, algorithm -> {"noisy": [K], "clean": [K]} turning-point rates of the recorded run;
            drawn as a sixth panel.
    """
    _theme()
    paths = []
    kinds = sorted({e.kind for e in effects if e.kind != "none"}) or ["none"]
    algos = list(dict.fromkeys(e.algo for e in effects))
    palette = dict(zip(algos, _palette(len(algos)), strict=True))
    for kind in kinds:
        chosen = [e for e in effects if e.kind in (kind, "none")]
        figure, axes = _grid(6 if clean_rates else 5, 3, (4.6, 3.6))
        for ax, (metric, title) in zip(axes, METRICS.items(), strict=False):
            shared = metric == "increment_sign_change"  # depends on the rewards only: one curve for all algorithms
            for algo in algos[:1] if shared else algos:
                rows = sorted(((e.level, getattr(e, metric)) for e in chosen if e.algo == algo), key=lambda r: r[0])
                rows = [(level, est) for level, est in rows if est is not None]
                if not rows:
                    continue
                levels = np.array([level for level, _ in rows])
                means = np.array([est.mean for _, est in rows])
                errors = np.array([[est.mean - est.low for _, est in rows], [est.high - est.mean for _, est in rows]])
                color, label = ("0.3", "every algorithm") if shared else (palette[algo], algo)
                ax.errorbar(levels, means, yerr=errors, marker="o", capsize=3, color=color, label=label)
            ax.set(xlabel=f"{kind} noise level", title=title)
        axes[3].legend(fontsize=8)
        if clean_rates:
            ax = axes[5]
            for algo, rates in clean_rates.items():
                color = palette.get(algo)
                ax.plot(rates["clean"], marker="o", color=color, label=f"{algo} clean")
                ax.plot(rates["noisy"], marker="x", linestyle="--", color=color, label=f"{algo} as trained")
            ax.set(xlabel="window step k", title="recorded run: turning-point rate")
            ax.legend(fontsize=7)
        figure.suptitle("What reward noise changes in the credit (mean over repeats, 95% range)")
        paths.append(_save(figure, out_dir / f"robustness_{kind}.png"))
    return paths


THEORY_TITLES = {
    "flip_rate": "sign flips of untied increments",
    "sign_change": "sign changes, ties included",
    "mark_rate": "share of (trajectory, step) marked",
    "precision": "turning-point precision",
    "recall": "turning-point recall",
}


def _theory_series(rows: list[TheoryRow], subject: str, quantity: str, noise: str | None) -> dict[str, np.ndarray]:
    """Predicted and measured values of one subject and quantity: per step at one noise level, or pooled per level."""
    chosen = [
        r
        for r in rows
        if r.subject == subject
        and r.quantity == quantity
        and ((r.step is not None) if noise else r.step is None)
        and (noise is None or r.noise == noise)
    ]
    x = np.array([r.step if noise else r.sigma for r in chosen], dtype=float)
    nan = float("nan")
    predicted = np.array([nan if r.predicted is None else r.predicted for r in chosen], dtype=float)
    mean = np.array([nan if r.measured is None else r.measured.mean for r in chosen], dtype=float)
    low = np.array([nan if r.measured is None else r.measured.mean - r.measured.low for r in chosen], dtype=float)
    high = np.array([nan if r.measured is None else r.measured.high - r.measured.mean for r in chosen], dtype=float)
    return {"x": x, "predicted": predicted, "mean": mean, "error": np.array([low, high])}


def _theory_panel(ax: plt.Axes, rows: list[TheoryRow], subjects: list[str], quantity: str, per_step: bool) -> None:
    """Predicted lines beside measured points with 95% intervals; per step (one colour per level) or against sigma."""
    levels = list(dict.fromkeys(r.noise for r in rows if r.sigma > 0)) if per_step else [None]
    markers = ["o", "x"]
    for color, noise in zip(_palette(len(levels)), levels, strict=True):
        for number, subject in enumerate(subjects):
            series = _theory_series(rows, subject, quantity, noise)
            if series["x"].size == 0:
                continue
            label = (f"sigma {noise.split(':')[-1]}" if noise else "predicted") if number == 0 else None
            if number == 0:
                ax.plot(series["x"], series["predicted"], color=color if noise else "0.2", label=label)
            measured = "measured" if number == 0 else "measured, as credited (balanced)"
            ax.errorbar(
                series["x"],
                series["mean"],
                yerr=series["error"],
                color=color if noise else f"C{number}",
                marker=markers[number % 2],
                linestyle="none",
                capsize=2,
                label=None if noise else measured,
            )
    ax.set(xlabel="window step k" if per_step else "Gaussian noise SD", title=THEORY_TITLES[quantity])
    if not per_step:
        sigmas = sorted({r.sigma for r in rows})
        ax.set_xscale("symlog", linthresh=min([s for s in sigmas if s > 0], default=1.0))
        ax.set_xticks(sigmas, [f"{s:g}" for s in sigmas])
        ax.xaxis.set_minor_formatter(NullFormatter())
    if ax.get_legend_handles_labels()[0]:  # a per-step panel without a noisy level has nothing to label
        ax.legend(fontsize=7)


def theory_figures(rows: list[TheoryRow], out_dir: Path) -> list[Path]:
    """The theory beside the measurement (:func:`~creditzoo.analysis.robustness.theory_comparison`).

    ``theory_increments.png``: sign flips of the untied increments, per step at each noise level and pooled against
    the level. ``theory_<rule>.png`` per turning-point rule: marked share, precision and recall, per step (top) and
    pooled (bottom); the rule's marks before balancing as points, the algorithm's balanced ones as crosses. Lines are
    predictions, error bars the measured 95% intervals over repeats.

    Returns:
        The PNG paths (none without rows).
    """
    if not rows:
        return []
    _theme()
    paths = []
    figure, axes = plt.subplots(1, 3, figsize=(16, 4))
    _theory_panel(axes[0], rows, ["increments"], "flip_rate", per_step=True)
    _theory_panel(axes[1], rows, ["increments"], "flip_rate", per_step=False)
    _theory_panel(axes[2], rows, ["increments"], "sign_change", per_step=False)
    pooled = {(r.quantity, r.sigma): r.predicted for r in rows if r.subject == "increments" and r.step is None}
    sigmas = sorted({sigma for _, sigma in pooled})
    naive = [  # a tie counted as a coin flip (1/2) instead of a certain change
        (1 - pooled[("tie_share", s)]) * (pooled[("flip_rate", s)] or 0.0)
        + pooled[("tie_share", s)] * (0.5 if s else 0)
        for s in sigmas
    ]
    axes[2].plot(sigmas, naive, color="0.5", linestyle=":", label="ties counted as 1/2")
    axes[2].legend(fontsize=7)
    figure.suptitle("Increment sign flips: Phi(-|d| / (sqrt(2) sigma)) (lines) beside measured (points, 95% CI)")
    paths.append(_save(figure, out_dir / "theory_increments.png"))
    for rule in dict.fromkeys(r.subject for r in rows if r.subject.startswith("rule:")):
        name = rule.removeprefix("rule:")
        subjects = [rule] + ([name] if any(r.subject == name for r in rows) else [])
        figure, axes = plt.subplots(2, 3, figsize=(15, 8))
        for column, quantity in enumerate(("mark_rate", "precision", "recall")):
            _theory_panel(axes[0, column], rows, subjects, quantity, per_step=True)
            _theory_panel(axes[1, column], rows, subjects, quantity, per_step=False)
        figure.suptitle(
            f"{name}: turning points under Gaussian noise, predicted (lines) beside measured (95% CI): "
            "dots the rule before balancing, crosses as credited (balanced)"
        )
        paths.append(_save(figure, out_dir / f"theory_{name}.png"))
    return paths


def noise_sweep_figure(scores: list[NoiseScore], out_dir: Path, *, metric: str) -> Path:
    """Final clean test score against the training reward-noise level per algorithm (``robustness_sweep.png``).

    One line per algorithm and noise kind, the mean over seeds with its 95% Student-t interval and every seed as a
    dot; noise-free runs sit at level 0 on every kind's line. The levels are evenly spaced categories (0.02 and
    0.2 would crowd 0 on a linear axis), and the algorithms are dodged apart so that their intervals do not overlap.
    """
    _theme()
    figure, ax = plt.subplots(figsize=(7.5, 4.5))
    algos = list(dict.fromkeys(s.algo for s in scores))
    kinds = sorted({s.kind for s in scores if s.kind != "none"}) or ["none"]
    levels = sorted({s.level for s in scores})
    styles = dict(zip(kinds, ["-", "--", ":", "-."] * len(kinds), strict=False))
    offsets = _dodge(len(algos), width=0.3)
    for algo, color, offset in zip(algos, _palette(len(algos)), offsets, strict=True):
        for kind in kinds:
            rows = sorted((s for s in scores if s.algo == algo and s.kind in (kind, "none")), key=lambda s: s.level)
            x = np.array([levels.index(s.level) + offset for s in rows])
            means = np.array([s.score.mean for s in rows])
            errors = np.array([[s.score.mean - s.score.low for s in rows], [s.score.high - s.score.mean for s in rows]])
            label = algo if len(kinds) == 1 else f"{algo} ({kind})"
            ax.errorbar(x, means, yerr=errors, marker="o", capsize=4, color=color, linestyle=styles[kind], label=label)
            for position, s in zip(x, rows, strict=True):
                seeds = s.score.values
                ax.scatter([position] * len(seeds), seeds, s=12, color=color, alpha=0.5, linewidths=0)
    ax.set_xticks(range(len(levels)), [f"{level:g}" for level in levels])
    ax.set(
        xlabel=f"training reward noise level ({', '.join(kinds)})",
        ylabel=f"final {metric}",
        title="final clean test score vs reward noise (mean, 95% Student-t interval over seeds; dots: seeds)",
    )
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left")
    return _save(figure, out_dir / "robustness_sweep.png")


# ----------------------------------------------------------------------------------------------- compare


def _colours(names: list[str]) -> dict[str, tuple]:
    """Colour-blind-safe distinct colours (seaborn "colorblind", 10; beyond, "husl" at even hue steps)."""
    palette = sns.color_palette("colorblind", len(names)) if len(names) <= 10 else sns.color_palette("husl", len(names))
    return dict(zip(names, palette, strict=True))


def _scheme_name(group, strata: list[str]) -> str:
    """A group's display name without its stratum (the panel or the axis already names it)."""
    if not strata:
        return group.name
    drop = set(short_label(group.stratum).split(" "))
    return " ".join(word for word in group.name.split(" ") if word not in drop) or group.name


def _level_name(stratum: str) -> str:
    """``reward_noise=gaussian:0.02`` -> ``gaussian:0.02`` (the axis label names the key)."""
    return " ".join(part.partition("=")[2] for part in stratum.split(" ")) or "all"


def _dodge(count: int, width: float = 0.7) -> np.ndarray:
    return (np.arange(count) - (count - 1) / 2) * (width / max(count, 1))


@dataclass(frozen=True)
class _PointStyle:
    """Sizes of an estimate drawn as its seeds (dots) and its mean with the interval (a marker with caps)."""

    dot_size: float
    dot_alpha: float
    capsize: float
    markersize: float


FINAL_POINTS = _PointStyle(dot_size=14, dot_alpha=0.55, capsize=3, markersize=6)  # one point per group and panel
BUDGET_POINTS = _PointStyle(dot_size=10, dot_alpha=0.5, capsize=2, markersize=4)  # three budget shares per group


def _seeds_and_interval(
    ax: plt.Axes, x: float, estimate: Estimate, colour: tuple, style: _PointStyle, label: str | None
) -> None:
    """Draw ``estimate`` at ``x``: every seed's value a dot, the mean a marker with its interval as error bar."""
    ax.scatter(
        [x] * len(estimate.values), estimate.values, s=style.dot_size, color=colour, alpha=style.dot_alpha, linewidths=0
    )
    ax.errorbar(
        [x],
        [estimate.mean],
        yerr=[[estimate.mean - estimate.low], [estimate.high - estimate.mean]],
        fmt="o",
        color=colour,
        capsize=style.capsize,
        markersize=style.markersize,
        label=label,
    )


def _base_line(ax: plt.Axes, base: float | None) -> None:
    """The base model's score as a dashed horizontal line (nothing when the comparison has none)."""
    if base is not None:
        ax.axhline(base, color="0.35", linestyle="--", linewidth=1, label="base model")


def _legend_entries(axes: Iterable[plt.Axes]) -> dict[str, object]:
    """Label -> handle over ``axes``, each label once (the first panel drawing it wins the order)."""
    unique: dict[str, object] = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        unique.update(zip(labels, handles, strict=True))
    return unique


def compare_figures(
    comparison: Comparison, out_dir: Path, *, panels: tuple[str, ...] = ("iterations", "model_evals")
) -> dict[str, Path]:
    """Final scores with per-seed points, test curves as small multiples, budget-matched scores, threshold costs.

    Args:
        comparison: the comparison.
        out_dir: where to write.
        panels: learning-curve x axes (``iterations``, ``model_evals``, ``seconds``) and ``train`` for the clean
            train reward's curves beside the test score's.

    Returns:
        caption -> path of ``compare_final.png``, ``compare_curves.png``, (``compare_train.png``),
        ``compare_budget.png``, ``compare_threshold.png`` and (with categories) ``compare_categories.png``.
    """
    _theme()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "Final scores: each seed a point, the mean with its 95% t interval; dashed: the base model": _final_figure(
            comparison, out_dir / "compare_final.png"
        )
    }
    axes = tuple(p for p in panels if p != "train") or ("iterations",)
    paths["Test score during training: mean over seeds, 95% t band, each seed a dot; one row per stratum"] = (
        _curve_figure(comparison, out_dir / "compare_curves.png", attribute="test_curve", axes=axes)
    )
    if "train" in panels and all(g.train_curve is not None for g in comparison.groups):
        paths["Clean train reward during training (mean over seeds, 95% t band)"] = _curve_figure(
            comparison, out_dir / "compare_train.png", attribute="train_curve", axes=axes
        )
    if comparison.budget_axes:
        paths["Test score at 25/50/100% of the baseline's budget (mean, 95% t interval, seeds as dots)"] = (
            _budget_figure(comparison, out_dir / "compare_budget.png")
        )
    paths["Cost to reach the threshold, as a ratio to the baseline (log scale)"] = _threshold_figure(
        comparison, out_dir / "compare_threshold.png"
    )
    groups = comparison.groups
    names = sorted({name for g in groups for name in g.categories})
    if names:
        matrix = np.array([[g.categories.get(n, np.nan) for n in names] for g in groups])
        figure, ax = plt.subplots(figsize=(1.3 * len(names) + 4, 0.5 * len(groups) + 2))
        sns.heatmap(
            matrix, annot=True, fmt=".3f", cmap="crest", xticklabels=names, yticklabels=[g.name for g in groups], ax=ax
        )
        ax.set_title(f"final {comparison.metrics[comparison.metric]} per category (mean over seeds)")
        paths["Final score per category"] = _save(figure, out_dir / "compare_categories.png")
    return paths


def _final_figure(comparison: Comparison, path: Path) -> Path:
    """One panel per metric (the chosen one, then the guards): x = stratum level (or group), hue = scheme."""
    groups, strata = comparison.groups, comparison.strata
    metrics = [comparison.metric, *[m for m, e in groups[0].guards.items() if e is not None]]
    schemes = list(dict.fromkeys(_scheme_name(g, strata) for g in groups))
    colours = _colours(schemes)
    levels = list(dict.fromkeys(g.stratum for g in groups)) if strata else [g.name for g in groups]
    width = max(4.2, 0.55 * len(levels) * (len(schemes) if strata else 1) + 1.5)
    figure, axes = plt.subplots(1, len(metrics), figsize=(width * len(metrics), 4.2), squeeze=False)
    offsets = _dodge(len(schemes)) if strata else np.zeros(len(schemes))
    for ax, metric in zip(axes[0], metrics, strict=True):
        for g in groups:
            estimate = g.final if metric == comparison.metric else g.guards[metric]
            scheme = _scheme_name(g, strata)
            x = levels.index(g.stratum if strata else g.name) + offsets[schemes.index(scheme)]
            _seeds_and_interval(ax, x, estimate, colours[scheme], FINAL_POINTS, scheme)
        _base_line(ax, comparison.base_score.get(metric))
        ax.set_xticks(range(len(levels)))
        ax.set_xticklabels(
            [_level_name(v) for v in levels] if strata else levels,
            rotation=0 if strata else 30,
            ha="center" if strata else "right",
        )
        ax.set(
            ylabel=comparison.metrics[metric], xlabel=", ".join(KEY_NAMES.get(k, k) for k in strata) if strata else ""
        )
        ax.set_title(comparison.metrics[metric] + (" (guard)" if metric != comparison.metric else ""))
    unique = _legend_entries([axes[0, 0]])
    if strata:  # the legend goes below the panels, in the room the layout keeps for it
        figure.legend(unique.values(), unique.keys(), loc="lower center", ncol=min(5, len(unique)), frameon=False)
    elif "base model" in unique:
        axes[0, 0].legend([unique["base model"]], ["base model"], fontsize=8)
    return _save(figure, path, rect=(0, 0.14, 1, 1) if strata else None)


def _curve_rows(comparison: Comparison) -> list[tuple[str, list]]:
    """(row title, its groups) of the learning-curve figure.

    One row per stratum; without a grid and with more than three groups, one row per group beside its baseline
    (instead of every curve in one panel).
    """
    groups = comparison.groups
    if comparison.strata:
        strata = list(dict.fromkeys(g.stratum for g in groups))
        return [(_level_name(s), [g for g in groups if g.stratum == s]) for s in strata]
    if len(groups) <= 3:
        return [("", groups)]
    by_label = {g.label: g for g in groups}
    return [(g.name, [by_label[g.baseline], g]) for g in groups if g.contrast is not None]


def _curve_figure(comparison: Comparison, path: Path, *, attribute: str, axes: tuple[str, ...]) -> Path:
    """Small multiples: one row per stratum (or per group beside its baseline), one column per x axis."""
    groups, strata = comparison.groups, comparison.strata
    rows = _curve_rows(comparison)
    schemes = list(dict.fromkeys(_scheme_name(g, strata) for g in groups))
    colours = _colours(schemes)
    figure, grid = plt.subplots(
        len(rows), len(axes), figsize=(5.2 * len(axes), 3.0 * len(rows) + 0.6), squeeze=False, sharey=True
    )
    base = comparison.curve_base_score.get(comparison.metric) if attribute == "test_curve" else None
    ylabel = comparison.metrics[comparison.metric] if attribute == "test_curve" else "clean train reward"
    for r, (title, members) in enumerate(rows):
        for c, axis in enumerate(axes):
            ax = grid[r, c]
            for g in members:
                curve = getattr(g, attribute)
                colour = colours[_scheme_name(g, strata)]
                x = np.array(getattr(curve, axis), dtype=float)
                ax.plot(x, curve.mean, color=colour, label=_scheme_name(g, strata), linewidth=1.6)
                ax.fill_between(x, curve.low, curve.high, color=colour, alpha=0.15, linewidth=0)
                for seed in curve.per_seed:
                    ax.plot(x, seed, linestyle="none", marker=".", markersize=3, color=colour, alpha=0.5)
            _base_line(ax, base)
            ax.set(xlabel=AXIS_NAMES[axis] if r == len(rows) - 1 else "")
            if c == 0:
                ax.set_ylabel(f"{title}\n{ylabel}" if title else ylabel)
            if axis == "model_evals":
                ax.xaxis.set_major_formatter(EngFormatter())
    if strata:
        grid[0, 0].set_title("rows: " + ", ".join(KEY_NAMES.get(k, k) for k in strata), loc="left", fontsize=9)
    unique = _legend_entries(grid[:, 0])
    figure.legend(unique.values(), unique.keys(), loc="lower center", ncol=min(4, len(unique)), frameon=False)
    return _save(figure, path, rect=(0, 0.045 * ((len(unique) + 3) // 4) * 3 / (len(rows) + 2), 1, 1))


def _budget_figure(comparison: Comparison, path: Path) -> Path:
    """One panel per budget axis and stratum: x = share of the baseline's budget, hue = scheme."""
    from creditzoo.analysis.compare import BUDGET_AXES, BUDGET_FRACTIONS

    groups, strata = comparison.groups, comparison.strata
    rows = list(dict.fromkeys(g.stratum for g in groups))
    schemes = list(dict.fromkeys(_scheme_name(g, strata) for g in groups))
    colours = _colours(schemes)
    shares = [f"{s:.0%}" for s in BUDGET_FRACTIONS]
    axes = comparison.budget_axes
    figure, grid = plt.subplots(
        len(rows), len(axes), figsize=(4.6 * len(axes), 3.2 * len(rows)), squeeze=False, sharey=True
    )
    for r, stratum in enumerate(rows):
        members = [g for g in groups if g.stratum == stratum]
        offsets = _dodge(len(members))
        for c, axis in enumerate(axes):
            ax = grid[r, c]
            for offset, g in zip(offsets, members, strict=True):
                scheme = _scheme_name(g, strata)
                for i, share in enumerate(shares):
                    label = scheme if i == 0 else None
                    _seeds_and_interval(ax, i + offset, g.budget[axis][share], colours[scheme], BUDGET_POINTS, label)
            _base_line(ax, comparison.curve_base_score.get(comparison.metric))  # budgets are read on the curves
            ax.set_xticks(range(len(shares)), shares)
            ax.set(xlabel=f"share of the baseline's {BUDGET_AXES[axis]}" if r == len(rows) - 1 else "")
            if c == 0:
                ylabel = comparison.metrics[comparison.metric]
                ax.set_ylabel(f"{_level_name(stratum)}\n{ylabel}" if strata else ylabel)
    unique = _legend_entries([grid[0, 0]])
    figure.legend(unique.values(), unique.keys(), loc="lower center", ncol=min(5, len(unique)), frameon=False)
    return _save(figure, path, rect=(0, 0.08 / max(len(rows), 1) * 2, 1, 1))


RATIO_TEXT = {
    "low": "  reached; the baseline not",
    "high": "  not reached",
    "neither": "  neither reached",
    "baseline_at_start": "  baseline at the start",
}
"""What the threshold figure writes where a group's point ratio is not a finite number."""


def _threshold_figure(comparison: Comparison, path: Path) -> Path:
    """Ratio of the cost to reach the threshold to the baseline's, per axis, on a log scale.

    Each interval end that falls among censored resamples is an arrow: to the right where the group never reached
    the threshold, to the left where the baseline never did (the group reached what the baseline did not).
    """
    groups = comparison.groups
    colours = _colours(list(dict.fromkeys(_scheme_name(g, comparison.strata) for g in groups)))
    figure, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(groups) + 2.4), squeeze=False)
    for ax, axis in zip(axes[0], ("iterations", "model_evals"), strict=True):
        drawn = [(y, g, g.to_threshold[axis]) for y, g in enumerate(groups)]
        placed = [c for _, _, c in drawn if c.ratio is not None and c.ratio > 0]
        # the ends that exist (a ratio of 0, reached at iteration 0, has no place on a log axis) and 1
        values = [1.0] + [v for c in placed for v in (c.ratio, c.ratio_low, c.ratio_high) if v is not None and v > 0]
        left, right = min(values) / 2, max(values) * 2  # open ends are arrows to the edges
        for y, g, c in drawn:
            colour = colours[_scheme_name(g, comparison.strata)]
            if c not in placed:  # no finite ratio, or reached at iteration 0
                text = "  at the start" if c.ratio is not None else RATIO_TEXT.get(c.ratio_censored or "", "  n/a")
                ax.text(1.0, y, text, va="center", fontsize=8, color="0.4")
                continue
            low = left if c.ratio_low is None else max(c.ratio_low, left)
            high = right if c.ratio_high is None else c.ratio_high
            ax.plot([low, high], [y, y], color=colour, linewidth=1.5)
            for end, closed in ((low, c.ratio_low is not None), (high, c.ratio_high is not None)):
                if closed:
                    ax.plot([end], [y], marker="|", markersize=9, markeredgewidth=1.5, color=colour)
                else:
                    arrow = {"arrowstyle": "-|>", "color": colour, "shrinkA": 0, "shrinkB": 0}
                    ax.annotate("", xy=(end, y), xytext=(c.ratio, y), arrowprops=arrow)
            ax.plot([c.ratio], [y], marker="o", color=colour)
        ax.axvline(1.0, color="0.3", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlim(left, right)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels([g.name for g in groups] if axis == "iterations" else [""] * len(groups))
        ax.set_ylim(len(groups) - 0.5, -0.5)  # first group on top
        ax.set(xlabel=f"{AXIS_NAMES[axis]} to threshold / baseline's (log)")
    figure.suptitle(
        f"Cost to reach {comparison.threshold:.3f} relative to the baseline (running maximum, 95% bootstrap)\n"
        "arrow right: the group did not reach it in that tail; arrow left: the baseline did not"
    )
    return _save(figure, path)
