"""Statistics of `creditzoo analyze compare`: intervals, tests, Holm, budgets, strata, interactions, paired evaluation.

Every statistic is checked against an independent computation (scipy / statsmodels called directly, a formula, or
a case whose answer is known by construction) on fixed inputs; run directories are hand-made in tmp_path.
"""

import json

import numpy as np
import pytest
from synthetic_runs import write_run
from typer.testing import CliRunner

from creditzoo.analysis.compare import (
    CompareOptions,
    RunGroup,
    censored_interval,
    compare_runs,
    cost_ratios,
    group_runs,
    parse_labels,
)
from creditzoo.analysis.report import render_report
from creditzoo.analysis.runs import load_run
from creditzoo.analysis.stats import (
    difference_in_differences,
    holm,
    paired_bootstrap,
    t_interval,
    value_at_cost,
    welch_contrast,
)
from creditzoo.cli import app

runner = CliRunner()
A = [0.71, 0.73, 0.695]
B = [0.665, 0.678, 0.694]


def analyze(*args: str):
    return runner.invoke(app, ["analyze", *args])


# ----------------------------------------------------------------------------------------------- the statistics


def test_t_interval_is_students_and_wider_than_the_seed_range() -> None:
    from scipy import stats

    estimate = t_interval(B)
    sem = np.std(B, ddof=1) / np.sqrt(3)
    half = stats.t.ppf(0.975, 2) * sem  # 4.303 standard errors with 2 degrees of freedom
    assert (estimate.low, estimate.high) == pytest.approx((np.mean(B) - half, np.mean(B) + half))
    assert estimate.low < min(B) and estimate.high > max(B)  # a percentile bootstrap would return [min, max]
    assert estimate.values == B
    assert t_interval([0.5]).low == t_interval([0.5]).high == 0.5


def test_t_interval_of_a_bounded_metric_is_clipped_to_its_range() -> None:
    from scipy import stats

    values = [0.9, 0.99, 0.6]  # mean 0.83, t half-width about 0.51 at 2 degrees of freedom: past 1
    low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert high > 1.0  # the unclipped interval leaves the range
    clipped = t_interval(values, bounds=(0.0, 1.0))
    assert (clipped.low, clipped.high) == (pytest.approx(low), 1.0)
    assert clipped.mean == pytest.approx(np.mean(values)) and clipped.values == values
    assert t_interval(values).high == pytest.approx(high)  # no bounds: nothing clipped
    near_zero = t_interval([0.0, 0.05, 0.3], bounds=(0.0, 1.0))
    assert near_zero.low == 0.0 and near_zero.high < 1.0


def test_tasks_declare_which_metrics_are_bounded() -> None:
    from creditzoo.tasks import UNIT, Metric, get_task

    assert {m.name: m.bounds for m in get_task("geneval").metrics} == dict.fromkeys(
        ("partial_score", "strict_accuracy", "extra_objects"), UNIT
    )
    assert get_task("pickscore").metrics[0].bounds is None  # a scaled logit: nothing is clipped
    with pytest.raises(ValueError, match="needs bounds"):
        Metric("glow", "m", bounds=(1.0, 0.0))


def test_welch_contrast_matches_scipy_and_the_formulas() -> None:
    from scipy import stats

    c = welch_contrast(A, B, group="a", baseline="b")
    reference = stats.ttest_ind(A, B, equal_var=False)
    assert c.p_value == pytest.approx(reference.pvalue)
    # Welch-Satterthwaite by hand
    va, vb = np.var(A, ddof=1) / 3, np.var(B, ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    assert (c.low, c.high) == pytest.approx((np.mean(A) - np.mean(B) - half, np.mean(A) - np.mean(B) + half))
    pooled = np.sqrt((np.var(A, ddof=1) + np.var(B, ddof=1)) / 2)
    assert c.hedges_g == pytest.approx((np.mean(A) - np.mean(B)) / pooled * (1 - 3 / (4 * 6 - 9)))
    pairs = [(x > y) + 0.5 * (x == y) for x in A for y in B]  # P(improvement) by counting the 9 pairs
    assert c.prob_improvement == pytest.approx(np.mean(pairs))


@pytest.mark.slow
def test_holm_matches_the_step_down_rule() -> None:
    p = [0.01, 0.04, 0.03, 0.5]
    # sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 -> 0.04, 0.09, 0.08 -> running max 0.09, then 0.5
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([]) == []


def test_an_interim_holm_bound_is_never_below_the_final_holm_p() -> None:
    """The studies' family table (studies/family_table.py, for secondary_family.py and noise-aware/family.py) shows,
    while some members of a family are still training, Holm's adjusted p with every pending member at p = 1: no p
    values the pending members may bring can make the final Holm-adjusted p larger than that bound (Holm is
    monotone in each p). Holm's step-down rule is written out here with numpy (statsmodels takes ~50 ms a call)
    and checked equal to statsmodels' on the first families."""

    def step_down(p: np.ndarray) -> np.ndarray:
        m, order = len(p), np.argsort(p, kind="stable")
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
        return adjusted

    rng = np.random.default_rng(0)
    tighter = 0
    for draw in range(500):
        m = int(rng.integers(2, 9))
        p = rng.uniform(0, 1, m) ** rng.uniform(0.5, 4)  # some families with very small p values
        if draw < 3:
            assert step_down(p) == pytest.approx(holm(list(p)))  # statsmodels' Holm
        known = rng.random(m) < 0.6  # the members in so far
        interim = step_down(np.where(known, p, 1.0))[known]
        final = step_down(p)[known]
        assert np.all(final <= interim + 1e-15)
        assert np.all(interim <= np.minimum(1.0, m * p[known]) + 1e-15)  # never looser than Bonferroni's m p
        tighter += int(np.any(interim < np.minimum(1.0, m * p[known]) - 1e-12))
    assert tighter > 100  # and often tighter


@pytest.mark.slow
def test_interaction_equals_the_ols_interaction_when_cells_share_their_spread() -> None:
    """Equal cell variances and sizes: the Welch-Satterthwaite test equals statsmodels' OLS interaction test."""
    import statsmodels.api as sm

    spread = np.array([-0.01, 0.0, 0.01])
    cells = {"b_ref": 0.60 + spread, "a_ref": 0.65 + spread, "b_level": 0.55 + spread, "a_level": 0.56 + spread}
    difference, low, high, df, p = difference_in_differences(cells)
    assert difference == pytest.approx((0.56 - 0.55) - (0.65 - 0.60))  # the lead shrinks from 0.05 to 0.01
    y = np.concatenate([cells["b_ref"], cells["a_ref"], cells["b_level"], cells["a_level"]])
    scheme = np.repeat([0, 1, 0, 1], 3)
    level = np.repeat([0, 0, 1, 1], 3)
    fit = sm.OLS(y, np.column_stack([np.ones(12), scheme, level, scheme * level])).fit()
    assert fit.params[3] == pytest.approx(difference)
    assert df == pytest.approx(8) and p == pytest.approx(fit.pvalues[3])
    assert (low, high) == pytest.approx(tuple(fit.conf_int()[3]))


def test_score_at_budget_on_a_curve_that_rises_peaks_and_falls() -> None:
    costs = np.array([0.0, 100.0, 200.0, 300.0, 400.0])
    values = np.array([0.5, 0.7, 0.8, 0.6, 0.55])  # peak at 200, then falls
    assert value_at_cost(costs, values, 100.0) == pytest.approx(0.7)
    assert value_at_cost(costs, values, 250.0) == pytest.approx(0.7)  # half way down from 0.8 to 0.6
    assert value_at_cost(costs, values, 400.0) == pytest.approx(0.55)  # the end, not the peak
    assert value_at_cost(costs, values, 900.0) == pytest.approx(0.55)  # spent less than the budget: keeps the last


def test_paired_bootstrap_keeps_the_pairing_through_shared_prompts() -> None:
    """Prompts differ a lot, the two groups differ by 0.1 on every prompt: the paired interval is exactly 0.1."""
    rng = np.random.default_rng(0)
    prompt_effect = rng.uniform(0, 1, size=12)  # [P]
    scores = np.stack([prompt_effect + 0.1] * 3 + [prompt_effect] * 3)  # [6, P]
    categories = np.repeat([0, 1, 2], 4)
    groups = {"a": np.arange(3), "b": np.arange(3, 6)}
    interval = paired_bootstrap(scores, categories, groups, [("a", "b")], resamples=200, seed=0)[("a", "b")]
    assert interval == pytest.approx((0.1, 0.1))
    unpaired = scores.copy()
    unpaired[:3] = prompt_effect[rng.permutation(12)] + 0.1  # a's prompts shuffled: the pairing is broken
    low, high = paired_bootstrap(unpaired, categories, groups, [("a", "b")], resamples=200, seed=0)[("a", "b")]
    assert high - low > 0.05


# ----------------------------------------------------------------------------------------------- run directories


def _runs(tmp_path, spec: dict[str, list[float]], **config) -> list:
    """One run per value: name -> final test scores of seeds 0, 1, ... (algo from the name before '@')."""
    paths = []
    for name, finals in spec.items():
        algo = name.split("@")[0]
        for seed, final in enumerate(finals):
            path = write_run(
                tmp_path / f"{name}-{seed}".replace("@", "-").replace(":", "_"),
                algo=algo,
                seed=seed,
                records=[],
                test_scores={0: 0.5, 2: final, 4: final},
                **config,
            )
            paths.append(path)
    return paths


@pytest.mark.slow
def test_threshold_resamples_that_never_cross_are_counted(tmp_path) -> None:
    runs = []
    for seed in range(2):
        runs.append(
            write_run(
                tmp_path / f"f{seed}",
                algo="flow_grpo",
                seed=seed,
                records=[],
                test_scores={0: 0.5, 10: 0.6 + 0.01 * seed},
            )
        )
        # one tp seed never reaches 0.6: a resample of only that seed never crosses
        final = 0.55 if seed == 0 else 0.7
        runs.append(write_run(tmp_path / f"t{seed}", seed=seed, records=[], test_scores={0: 0.5, 10: final}))
    comparison = compare_runs([load_run(p) for p in runs], CompareOptions(resamples=400, threshold=0.6))
    crossing = comparison.groups[1].to_threshold["iterations"]
    # a resample of two runs is the low seed twice with probability 1/4: about 100 of 400 never cross
    assert 60 < crossing.not_reached < 140
    assert crossing.reached_share == pytest.approx(1 - crossing.not_reached / 400)
    assert crossing.high is None  # the upper tail is "not reached", not dropped
    assert crossing.value == pytest.approx(10 * (0.6 - 0.5) / (0.625 - 0.5))  # the mean curve crosses at 8


def _reach_runs(tmp_path, finals: dict[str, list[float]]) -> list:
    """Runs whose test curve goes 0.5 -> final between iterations 0 and 10, one per final (seeds 0, 1, ...)."""
    paths = []
    for algo, values in finals.items():
        for seed, final in enumerate(values):
            path = tmp_path / f"{algo}{seed}"
            paths.append(write_run(path, algo=algo, seed=seed, records=[], test_scores={0: 0.5, 10: final}))
    return paths


@pytest.mark.slow
def test_a_baseline_resample_that_never_crosses_is_a_censored_low_ratio(tmp_path) -> None:
    # the baseline's seed 0 never reaches 0.6: a resample of it twice (probability 1/4) never crosses, while every
    # resample of the group does; the group reached what the baseline did not, a ratio below any finite one
    finals = {"flow_grpo": [0.55, 0.7], "tp_grpo_strict": [0.7, 0.72]}
    runs = [load_run(p) for p in _reach_runs(tmp_path, finals)]
    comparison = compare_runs(runs, CompareOptions(resamples=400, threshold=0.6))
    base, crossing = (g.to_threshold["iterations"] for g in comparison.groups)
    assert 60 < base.not_reached < 140  # the baseline's own never-crossing resamples
    # the group's resample r is paired with the baseline's resample r: each never-crossing one is censored low
    assert crossing.baseline_never == base.not_reached
    assert crossing.group_never == crossing.both_never == crossing.baseline_at_start == 0
    assert crossing.resamples == 400
    assert crossing.ratio_low is None  # an open lower end, not a ratio of 0
    # finite ratios by construction: a mean final m crosses 0.6 at 10 * 0.1 / (m - 0.5); the largest is 5 / 5, in
    # one resample of 16 (group seed 0 twice, baseline seed 1 twice), so it is the 97.5% order statistic
    assert crossing.ratio_high == pytest.approx(1.0)
    assert crossing.ratio == pytest.approx((1 / 0.21) / (1 / 0.125), abs=1e-4)  # mean curves: 4.76 / 8
    assert crossing.ratio_censored is None
    assert base.ratio == pytest.approx(1.0) and base.both_never == base.not_reached  # the baseline against itself
    report = render_report(comparison, {})
    row = next(line for line in report.splitlines() if line.startswith("| tp_grpo_strict | 4.8"))
    assert "0.60 [baseline not reached, 1.00] | " in row
    assert row.endswith(f"| 0 | {crossing.baseline_never} | 0 |")


def test_cost_ratios_keep_every_censored_case() -> None:
    inf = np.inf
    group = np.array([1.0, inf, 2.0, inf, 3.0, 0.0, 4.0])  # [R] cost to reach, inf: never
    base = np.array([2.0, 1.0, inf, inf, 0.0, 0.0, 8.0])
    result = cost_ratios(group, base)
    expected = np.array([0.5, inf, -inf, np.nan, np.nan, np.nan, 0.5])  # NaN: no ratio
    np.testing.assert_array_equal(result.ratios, expected)
    assert (result.group_never, result.baseline_never, result.both_never, result.baseline_at_start) == (1, 1, 1, 2)
    # an interval over them: order statistics, censored ends open (None)
    kept = result.ratios[~np.isnan(result.ratios)]  # sorted: -inf, 0.5, 0.5, inf
    assert censored_interval(kept, confidence=0.2) == (0.5, 0.5)  # positions 1.2 and 1.8 of 0..3
    assert censored_interval(kept, confidence=0.9) == (None, None)


@pytest.mark.slow
def test_a_grid_compares_each_level_with_the_baseline_at_that_level(tmp_path) -> None:
    spec = {}
    for noise, drop in (("none", 0.0), ("gaussian:0.1", 0.1)):
        spec[f"flow_grpo@{noise}"] = [0.60 - drop, 0.61 - drop, 0.62 - drop]
        spec[f"tp_grpo_strict@{noise}"] = [x + (0.05 if noise == "none" else 0.0) for x in spec[f"flow_grpo@{noise}"]]
    paths = []
    for name, finals in spec.items():
        algo, noise = name.split("@")
        for seed, final in enumerate(finals):
            paths.append(
                write_run(
                    tmp_path / f"{algo}-{noise.replace(':', '_')}-{seed}",
                    algo=algo,
                    seed=seed,
                    records=[],
                    reward_noise=None if noise == "none" else noise,
                    test_scores={0: 0.5, 2: final},
                )
            )
    comparison = compare_runs([load_run(p) for p in paths])
    assert comparison.strata == ["reward_noise"]
    by_label = {g.label: g for g in comparison.groups}
    noisy = by_label["tp_grpo_strict reward_noise=gaussian:0.1"]
    assert noisy.baseline == "flow_grpo reward_noise=gaussian:0.1"  # not the noise-free flow_grpo
    assert noisy.contrast.difference == pytest.approx(0.0)
    assert by_label["tp_grpo_strict reward_noise=none"].contrast.difference == pytest.approx(0.05)
    (interaction,) = comparison.interactions
    assert interaction.difference == pytest.approx(-0.05)  # the lead of 0.05 is gone under noise
    assert interaction.lead_reference == pytest.approx(0.05) and interaction.lead_level == pytest.approx(0.0)
    # the family: two contrasts (tp at each level) and one interaction
    assert comparison.family == 3
    assert not any("has no flow_grpo group" in line for line in comparison.warnings)
    # a level without the baseline's runs falls back to the reference baseline, and says so in one warning
    extra = [
        write_run(
            tmp_path / f"extra-{seed}",
            algo="tp_grpo_strict",
            seed=seed,
            records=[],
            reward_noise="gaussian:0.3",
            test_scores={0: 0.5, 2: 0.55 + 0.01 * seed},
        )
        for seed in range(3)
    ]
    partial = compare_runs([load_run(p) for p in [*paths, *extra]])
    fallback = {g.label: g for g in partial.groups}["tp_grpo_strict reward_noise=gaussian:0.3"]
    assert fallback.baseline == "flow_grpo reward_noise=none"
    said = [line for line in partial.warnings if "has no flow_grpo group" in line]
    assert said == [
        "stratum 'reward_noise=gaussian:0.3' has no flow_grpo group: its groups are compared with "
        "'flow_grpo reward_noise=none' (another stratum's baseline, so the contrast mixes the grid value into the "
        "difference)"
    ]


def test_a_grid_reads_each_levels_threshold_cost_against_the_baseline_at_that_level(tmp_path) -> None:
    """Every curve reaches the one threshold at iteration 2; costs differ only by model evaluations per iteration:
    flow_grpo 50 without noise and 100 with it, tp_grpo_strict 200 at both levels. Within each level the ratio is
    200/50 = 4 and 200/100 = 2; against the reference baseline the noisy level would read 4 too."""
    paths = []
    for algo, noise, evals in (
        ("flow_grpo", None, 50.0),
        ("flow_grpo", "gaussian:0.1", 100.0),
        ("tp_grpo_strict", None, 200.0),
        ("tp_grpo_strict", "gaussian:0.1", 200.0),
    ):
        for seed, final in enumerate((0.70, 0.71, 0.72)):
            paths.append(
                write_run(
                    tmp_path / f"{algo}-{noise}-{seed}".replace(":", "_"),
                    algo=algo,
                    seed=seed,
                    records=[],
                    reward_noise=noise,
                    model_evals=evals,
                    test_scores={0: 0.5, 2: final},
                )
            )
    comparison = compare_runs([load_run(p) for p in paths], CompareOptions(resamples=50))
    assert comparison.threshold == pytest.approx(0.71)
    by_label = {g.label: g for g in comparison.groups}
    noisy = by_label["tp_grpo_strict reward_noise=gaussian:0.1"].to_threshold
    clean = by_label["tp_grpo_strict reward_noise=none"].to_threshold
    assert noisy["iterations"].ratio == pytest.approx(1.0) and clean["iterations"].ratio == pytest.approx(1.0)
    assert clean["model_evals"].ratio == pytest.approx(4.0)
    assert noisy["model_evals"].ratio == pytest.approx(2.0)  # against flow_grpo at SD 0.1, not the noise-free one
    assert by_label["flow_grpo reward_noise=gaussian:0.1"].to_threshold["model_evals"].ratio == pytest.approx(1.0)


@pytest.mark.slow
def test_holm_adjusts_all_contrasts_and_primary_stands_alone(tmp_path) -> None:
    paths = _runs(tmp_path, {"flow_grpo": B, "tp_grpo_strict": A, "incremental": [0.70, 0.69, 0.72]})
    runs = [load_run(p) for p in paths]
    comparison = compare_runs(runs)
    raw = [g.contrast.p_value for g in comparison.groups[1:]]
    assert [g.contrast.p_adjusted for g in comparison.groups[1:]] == pytest.approx(holm(raw))
    primary = compare_runs(runs, CompareOptions(primary="tp_grpo_strict:flow_grpo"))
    tp = next(g for g in primary.groups if g.algo == "tp_grpo_strict")
    assert tp.contrast.primary and tp.contrast.p_adjusted == pytest.approx(tp.contrast.p_value)
    assert primary.family == 1  # incremental alone is left in the family


@pytest.mark.slow
def test_guards_and_budget_shares_are_reported(tmp_path) -> None:
    paths = _runs(tmp_path, {"flow_grpo": B, "tp_grpo_strict": A})
    comparison = compare_runs([load_run(p) for p in paths], CompareOptions(budget_axes=("model_evals", "iterations")))
    tp = comparison.groups[1]
    assert tp.guards["test_strict_accuracy"].mean == pytest.approx(np.mean(A) / 2)  # write_run: strict = partial / 2
    assert set(tp.budget) == {"model_evals", "iterations"} and set(tp.budget["iterations"]) == {"25%", "50%", "100%"}
    # at 50% of 4 iterations the curve 0.5 -> final at iteration 2 is at its final value
    assert tp.budget["iterations"]["50%"].mean == pytest.approx(np.mean(A))
    assert tp.budget["iterations"]["25%"].mean == pytest.approx(np.mean([(0.5 + a) / 2 for a in A]))


@pytest.mark.slow
def test_intervals_of_bounded_metrics_are_clipped_in_the_comparison_and_report(tmp_path) -> None:
    from scipy import stats

    finals = [0.9, 0.99, 0.6]  # partial score in [0, 1]: its t interval runs past 1
    paths = _runs(tmp_path, {"flow_grpo": B, "tp_grpo_strict": finals})
    comparison = compare_runs([load_run(p) for p in paths])
    assert comparison.bounds["test_partial_score"] == [0.0, 1.0]
    tp = comparison.groups[1]
    low, _ = stats.t.interval(0.95, 2, loc=np.mean(finals), scale=stats.sem(finals))
    assert (tp.final.low, tp.final.high) == (pytest.approx(low), 1.0)
    assert tp.budget["model_evals"]["100%"].high == 1.0 and tp.last_k.high <= 1.0
    assert max(tp.test_curve.high) == 1.0  # the band at the last evaluation, clipped
    strict = [f / 2 for f in finals]  # write_run: strict accuracy = partial / 2, well inside [0, 1]
    s_low, s_high = stats.t.interval(0.95, 2, loc=np.mean(strict), scale=stats.sem(strict))
    assert (tp.guards["test_strict_accuracy"].low, tp.guards["test_strict_accuracy"].high) == pytest.approx(
        (s_low, s_high)
    )
    unclipped = welch_contrast(finals, B, group="a", baseline="b")
    assert tp.contrast.high == pytest.approx(unclipped.high)  # a difference is not clipped
    report = render_report(comparison, {})
    assert "0.830 [" in report and ", 1.000] |" in report
    assert "clipped to their range (partial score, strict accuracy, extra-object rate to [0, 1])" in report


# ----------------------------------------------------------------------------------------------- paired evaluation


PROTOCOL = {
    "name": "final",
    "num_steps": 40,
    "samples_per_prompt": 2,
    "min_images_per_category": 32,
    "guidance_scale": 1.0,
    "shift": 1.0,
    "split": "test",
    "noise_table": "blake2b:geneval:0",
    "sampler": "ode",
}


def write_final_eval(run_dir, per_image: np.ndarray, *, protocol: dict = PROTOCOL, name: str = "final.json") -> None:
    """An eval/final.json (or base.json) in the paired protocol's format: per_image [P, S] partial scores."""
    categories = ["counting", "colors", "position"]
    images = []
    for p in range(per_image.shape[0]):
        for s in range(per_image.shape[1]):
            score = float(per_image[p, s])
            images.append(
                {
                    "prompt_index": p,
                    "prompt": f"prompt {p}",
                    "category": categories[p % 3],
                    "sample_index": s,
                    "partial_score": score,
                    "strict_accuracy": float(score > 0.5),
                    "extra_objects": 0.0,
                }
            )
    record = {
        "protocol": protocol,
        "task": "geneval",
        "iteration": 4,
        "adapter": None,
        "metrics": ["partial_score", "strict_accuracy", "extra_objects"],
        "summary": {"partial_score": float(per_image.mean())},
        "images": images,
    }
    (run_dir / "eval" / name).write_text(json.dumps(record))


@pytest.mark.slow
def test_per_image_final_evaluations_are_used_and_paired(tmp_path) -> None:
    paths = _runs(tmp_path, {"flow_grpo": B, "tp_grpo_strict": A})
    rng = np.random.default_rng(1)
    prompts = rng.uniform(0.2, 0.9, size=(6, 2))  # [P, S] shared difficulty of each (prompt, sample)
    for i, path in enumerate(paths):
        write_final_eval(path, prompts + (0.1 if i >= 3 else 0.0) + 0.001 * i)
    comparison = compare_runs([load_run(p) for p in paths])
    assert comparison.paired and "eval/final.json" in comparison.scores_source
    tp = comparison.groups[1]
    # the scores come from the images (category-balanced), not from metrics.jsonl
    assert tp.contrast.difference == pytest.approx(0.1 + 0.003)
    # prompt effects cancel (shared by every run); only the seeds' offsets (0.001 * run) move the difference,
    # between 0.1 + 0.003 - 0.002 and 0.1 + 0.005 - 0.000
    assert 0.101 - 1e-9 <= tp.contrast.bootstrap_low <= tp.contrast.bootstrap_high <= 0.105 + 1e-9
    # another protocol in one run: not mixed, the in-run scores are used and the report says why
    write_final_eval(paths[0], prompts, protocol={**PROTOCOL, "noise_table": "blake2b:geneval:1"})
    fallback = compare_runs([load_run(p) for p in paths])
    assert not fallback.paired and "different protocols" in fallback.scores_source
    assert fallback.groups[1].contrast.difference == pytest.approx(np.mean(A) - np.mean(B))


def test_a_runs_notes_do_not_define_its_group(tmp_path) -> None:
    # config.json's "notes" are caveats written from the other fields (e.g. split_noise=code:C): two seeds whose
    # notes were worded differently (another commit) are one group, and no label carries the notes
    paths = _runs(tmp_path, {"flow_grpo": B[:2]})
    for path, notes in zip(paths, (["an off-policy caveat"], None), strict=True):
        config = json.loads((path / "config.json").read_text())
        config["notes"] = notes
        (path / "config.json").write_text(json.dumps(config))
    groups = group_runs([load_run(p) for p in paths])
    assert len(groups) == 1 and "notes" not in groups[0].label and "notes" not in groups[0].config


@pytest.mark.slow
def test_the_default_threshold_is_read_on_the_test_curves_the_costs_come_from(tmp_path) -> None:
    # final evaluations under another protocol score above every point of the in-run curves (as a 40-step,
    # 4-sample final evaluation can): the threshold is still the baseline's last in-run mean, which it reaches
    paths = _runs(tmp_path, {"flow_grpo": B, "tp_grpo_strict": A})
    for i, path in enumerate(paths):
        write_final_eval(path, np.full((6, 2), 0.95 + 0.001 * i))
    comparison = compare_runs([load_run(p) for p in paths])
    assert comparison.paired and comparison.groups[0].final.mean > max(A + B)
    assert comparison.threshold == pytest.approx(np.mean(B), abs=1e-6)
    flow, tp = comparison.groups
    assert flow.to_threshold["iterations"].value is not None and tp.to_threshold["iterations"].value is not None
    assert "on its test curve" in comparison.threshold_source


@pytest.mark.slow
def test_curves_and_budgets_draw_the_base_model_on_their_own_protocol(tmp_path, monkeypatch) -> None:
    # paired final scores carry the base model under the final protocol (eval/base.json, 0.9 here); the in-run
    # curves start from the base model's in-run score (0.5 at iteration 0), and their figures draw that one
    from creditzoo.analysis import plots

    paths = _runs(tmp_path, {"flow_grpo": B, "tp_grpo_strict": A})
    for i, path in enumerate(paths):
        write_final_eval(path, np.full((6, 2), 0.95 + 0.001 * i))
        write_final_eval(path, np.full((6, 2), 0.9), name="base.json")
    comparison = compare_runs([load_run(p) for p in paths])
    assert comparison.base_score["test_partial_score"] == pytest.approx(0.9)
    assert comparison.curve_base_score["test_partial_score"] == pytest.approx(0.5)
    drawn = []
    monkeypatch.setattr(plots, "_base_line", lambda ax, base: drawn.append(base))
    plots._curve_figure(comparison, tmp_path / "curves.png", attribute="test_curve", axes=("iterations",))
    plots._budget_figure(comparison, tmp_path / "budget.png")
    assert drawn and all(base == pytest.approx(0.5) for base in drawn)
    curves = len(drawn)
    plots._final_figure(comparison, tmp_path / "final.png")  # final scores: the base model on their protocol
    assert drawn[curves:] == pytest.approx([comparison.base_score[m] for m in comparison.metrics])  # a panel each
    assert drawn[curves] == pytest.approx(0.9)


# ----------------------------------------------------------------------------------------------- bad input, warnings


def _one_line_error(result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert expected in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--primary", "tp_grpo_strict:tempflow"], "--primary 'tp_grpo_strict:tempflow' does not name two groups"),
        (["--primary", "flow_grpo"], "does not name two groups as A:B"),
        (["--budget", "decodes"], "unknown budget axis 'decodes'; valid: model_evals"),
        (["--budget", "reward_calls"], "budget axis 'reward_calls' is not recorded by every run; recorded:"),
        (["--label", "tempflow=T"], "--label 'tempflow' names no group"),
        (["--label", "flow_grpo"], "is not NAME=TEXT"),
        (["--label", "flow_grpo="], "is not NAME=TEXT"),
        (["--label", "tempflow noise=none=T"], "--label 'tempflow noise=none' names no group; groups: flow_grpo, tp"),
        (["--panels", "loss"], "unknown panel 'loss'; valid: iterations"),
        (["--last-k", "0"], "--last-k must be >= 1"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, args, expected) -> None:
    paths = _runs(tmp_path, {"flow_grpo": B, "tp_grpo_strict": A})
    _one_line_error(analyze("compare", *map(str, paths), *args, "--out", str(tmp_path / "out")), expected)


def test_a_label_name_may_hold_equals_signs() -> None:
    groups = [
        RunGroup("flow_grpo reward_noise=none", {"algo": "flow_grpo"}, []),
        RunGroup("flow_grpo reward_noise=gaussian:0.1", {"algo": "flow_grpo"}, []),
        RunGroup("tp_grpo_strict reward_noise=none", {"algo": "tp_grpo_strict"}, []),
    ]
    # the longest prefix that names a group: its label, its display name (noise=...) or its algorithm
    assert parse_labels(["flow_grpo reward_noise=none=Flow (clean)"], groups) == {
        "flow_grpo reward_noise=none": "Flow (clean)"
    }
    assert parse_labels(["flow_grpo noise=gaussian:0.1=Flow, SD 0.1"], groups) == {
        "flow_grpo reward_noise=gaussian:0.1": "Flow, SD 0.1"
    }
    assert parse_labels(["tp_grpo_strict=TP a=b"], groups) == {"tp_grpo_strict": "TP a=b"}  # TEXT holds '='
    with pytest.raises(ValueError, match=r"^--label 'tempflow reward_noise=none' names no group; groups: flow_grpo"):
        parse_labels(["tempflow reward_noise=none=T"], groups)  # unknown: NAME is the item up to its last '='
    with pytest.raises(ValueError, match="is not NAME=TEXT"):
        parse_labels(["flow_grpo reward_noise=none="], groups)


@pytest.mark.slow
def test_a_grid_group_is_renamed_from_the_command_line(tmp_path) -> None:
    paths = []
    for noise in ("none", "gaussian:0.1"):
        for algo, finals in (("flow_grpo", B), ("tp_grpo_strict", A)):
            for seed, final in enumerate(finals):
                path = tmp_path / f"{algo}-{noise.replace(':', '_')}-{seed}"
                noise_config = None if noise == "none" else noise
                paths.append(
                    write_run(
                        path,
                        algo=algo,
                        seed=seed,
                        records=[],
                        reward_noise=noise_config,
                        test_scores={0: 0.5, 2: final},
                    )
                )
    out = tmp_path / "out"
    label = "tp_grpo_strict noise=gaussian:0.1=TP (noise=0.1)"
    result = analyze("compare", *map(str, paths), "--out", str(out), "--label", label)
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert "- TP (noise=0.1) vs flow_grpo noise=gaussian:0.1:" in report
    assert "- tp_grpo_strict noise=none vs flow_grpo noise=none:" in report  # the other level keeps its name
    unknown = analyze("compare", *map(str, paths), "--out", str(out), "--label", "tp_grpo noise=none=T")
    _one_line_error(unknown, "--label 'tp_grpo noise=none' names no group; groups: flow_grpo reward_noise=none, ")


def test_runs_on_different_test_sets_are_refused(tmp_path) -> None:
    prompts = tmp_path / "train.txt"
    prompts.write_text("a photo of a cat\n")
    (tmp_path / "other_test.txt").write_text("a photo of a dog\n")
    a = write_run(tmp_path / "a", algo="flow_grpo", records=[], test_scores={0: 0.5, 2: 0.6})
    b = write_run(tmp_path / "b", records=[], test_scores={0: 0.5, 2: 0.9})
    config = json.loads((b / "config.json").read_text())
    (b / "config.json").write_text(json.dumps({**config, "prompts": f"{prompts},{tmp_path / 'other_test.txt'}"}))
    result = analyze("compare", str(a), str(b))
    _one_line_error(result, "runs evaluated on different test sets cannot be compared")
    assert "other_test.txt" in result.output and "task's own test prompts" in result.output


@pytest.mark.slow
def test_provenance_differences_warn_in_one_line(tmp_path) -> None:
    paths = _runs(tmp_path, {"flow_grpo": B, "tp_grpo_strict": A})
    for i, path in enumerate(paths[:4]):
        config = json.loads((path / "config.json").read_text())
        provenance = {"git_commit": "abc" if i < 2 else "def", "git_dirty": False, "versions": {"torch": "2.13.0"}}
        (path / "config.json").write_text(json.dumps({**config, "provenance": provenance}))
    comparison = compare_runs([load_run(p) for p in paths])
    assert any(
        w == "provenance unknown for 2 of 6 runs (config.json records no commit or versions)"
        for w in comparison.warnings
    )
    differ = [w for w in comparison.warnings if w.startswith("runs differ in provenance")]
    assert differ == ["runs differ in provenance: git_commit (abc in 2, def in 2)"]
    # provenance does not split groups
    assert [len(g.runs) for g in comparison.groups] == [3, 3]
    result = analyze("compare", *map(str, paths), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0 and "warning: runs differ in provenance" in result.output


@pytest.mark.slow
def test_report_opens_with_verdicts_and_a_ranked_table(tmp_path) -> None:
    paths = _runs(tmp_path, {"flow_grpo": B, "tp_grpo_strict": A})
    result = analyze("compare", *map(str, paths), "--out", str(tmp_path / "out"), "--label", "tp_grpo_strict=TP")
    assert result.exit_code == 0, result.output
    report = (tmp_path / "out" / "report.md").read_text()
    verdicts = report.index("## Verdicts")
    assert verdicts < report.index("## Ranked") < report.index("## Budget-matched")
    assert "- TP vs flow_grpo: +0.033" in report and "not established at 0.05" in report
    assert "strict accuracy 0.36 vs 0.34" in report  # the guard beside the verdict
    assert "Student-t" in report and "Holm" in report
    assert "0.710, 0.730, 0.695" in report  # per-seed values


def test_a_p_value_below_the_shown_precision_reads_as_a_bound_in_a_sentence() -> None:
    """A verdict says "Holm p < 0.001", never "Holm p = < 0.001"."""
    from creditzoo.analysis.report import _p_is

    assert _p_is(0.0004) == "< 0.001"
    assert _p_is(0.0062) == "= 0.006"
    assert _p_is(None) == "= n/a"
