"""Figures of the studies, as PNG files: the only module that imports seaborn and matplotlib (Agg backend).

Each function takes a study's result (see :mod:`creditzoo.analysis.turning_points`, :mod:`.compare`,
:mod:`.robustness`), writes its figures into a directory and returns their paths.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

from creditzoo.analysis.compare import COST_AXES, Comparison  # noqa: E402
from creditzoo.analysis.robustness import NoiseEffect, NoiseScore  # noqa: E402
from creditzoo.analysis.turning_points import TurningPointReport  # noqa: E402

DPI = 110
AXIS_NAMES = {"iterations": "iterations", "model_evals": "model evaluations", "seconds": "wall-clock seconds"}


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
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


def noise_sweep_figure(scores: list[NoiseScore], out_dir: Path, *, metric: str) -> Path:
    """Final clean test score against the training reward-noise level per algorithm (``robustness_sweep.png``).

    One line per algorithm and noise kind; noise-free runs sit at level 0 on every kind's line.
    """
    _theme()
    figure, ax = plt.subplots(figsize=(7, 4.5))
    algos = list(dict.fromkeys(s.algo for s in scores))
    kinds = sorted({s.kind for s in scores if s.kind != "none"}) or ["none"]
    styles = dict(zip(kinds, ["-", "--", ":", "-."] * len(kinds), strict=False))
    for algo, color in zip(algos, _palette(len(algos)), strict=True):
        for kind in kinds:
            rows = sorted((s for s in scores if s.algo == algo and s.kind in (kind, "none")), key=lambda s: s.level)
            levels = np.array([s.level for s in rows])
            means = np.array([s.score.mean for s in rows])
            errors = np.array([[s.score.mean - s.score.low for s in rows], [s.score.high - s.score.mean for s in rows]])
            label = algo if len(kinds) == 1 else f"{algo} ({kind})"
            ax.errorbar(
                levels, means, yerr=errors, marker="o", capsize=4, color=color, linestyle=styles[kind], label=label
            )
    ax.set(
        xlabel=f"training reward noise level ({', '.join(kinds)})",
        ylabel=f"final {metric}",
        title="final clean test score vs reward noise (95% bootstrap over seeds)",
    )
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left")
    return _save(figure, out_dir / "robustness_sweep.png")


# ----------------------------------------------------------------------------------------------- compare


def compare_figures(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """Learning curves, threshold-cost ratios and per-category scores.

    Returns:
        caption -> path of ``compare_curves.png``, ``compare_threshold.png`` and (with categories)
        ``compare_categories.png``.
    """
    _theme()
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = comparison.groups
    palette = dict(zip([g.label for g in groups], _palette(len(groups)), strict=True))
    figure, axes = plt.subplots(2, 3, figsize=(16, 8.5), squeeze=False)
    for row, (attribute, ylabel) in enumerate(
        (("train_curve", "clean train reward"), ("test_curve", comparison.metric))
    ):
        for col, axis in enumerate(COST_AXES):
            ax = axes[row, col]
            for g in groups:
                curve = getattr(g, attribute)
                if curve is None:
                    continue
                x = np.array(getattr(curve, axis), dtype=float)
                ax.plot(x, curve.mean, color=palette[g.label], label=g.label, marker="." if row else None)
                ax.fill_between(x, curve.low, curve.high, color=palette[g.label], alpha=0.2, linewidth=0)
            if row == 1:
                ax.axhline(comparison.threshold, color="0.3", linestyle=":", linewidth=1, label="threshold")
            ax.set(xlabel=AXIS_NAMES[axis], ylabel=ylabel)
            if axis == "model_evals":
                ax.xaxis.set_major_formatter(EngFormatter())
    handles, labels = axes[1, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=9, frameon=False)
    figure.suptitle("Learning curves: mean over seeds, 95% bootstrap band")
    figure.tight_layout(rect=(0, 0.04 + 0.025 * ((len(labels) + 3) // 4), 1, 1))
    figure.savefig(out_dir / "compare_curves.png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    paths = {"Learning curves (mean over seeds, 95% bootstrap band)": out_dir / "compare_curves.png"}

    figure, axes = plt.subplots(1, 3, figsize=(15, 0.6 * len(groups) + 2.5), squeeze=False)
    labels = [g.label for g in groups]
    for ax, axis in zip(axes[0], COST_AXES, strict=True):
        for y, g in enumerate(groups):
            c = g.to_threshold[axis]
            if c.ratio is None:
                ax.text(1.0, y, " not reached", va="center", fontsize=8, color="0.4")
                continue
            low = c.ratio - (c.ratio_low if c.ratio_low is not None else c.ratio)
            high = (c.ratio_high if c.ratio_high is not None else c.ratio) - c.ratio
            ax.errorbar(
                [c.ratio], [y], xerr=[[max(low, 0)], [max(high, 0)]], fmt="o", capsize=4, color=palette[g.label]
            )
        ax.axvline(1.0, color="0.3", linestyle=":", linewidth=1)
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels(labels if axis == "iterations" else [""] * len(groups))
        ax.invert_yaxis()
        ax.set(xlabel=f"{AXIS_NAMES[axis]} to threshold / baseline's")
    figure.suptitle(f"Cost to reach {comparison.threshold:.3f} relative to {comparison.baseline} (95% bootstrap)")
    paths["Cost to reach the threshold, as a ratio to the baseline"] = _save(figure, out_dir / "compare_threshold.png")

    names = sorted({name for g in groups for name in g.categories})
    if names:
        matrix = np.array([[g.categories.get(n, np.nan) for n in names] for g in groups])
        figure, ax = plt.subplots(figsize=(1.3 * len(names) + 4, 0.5 * len(groups) + 2))
        sns.heatmap(matrix, annot=True, fmt=".3f", cmap="crest", xticklabels=names, yticklabels=labels, ax=ax)
        ax.set_title(f"final {comparison.metric} per category (mean over seeds)")
        paths["Final score per category"] = _save(figure, out_dir / "compare_categories.png")
    return paths
