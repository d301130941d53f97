"""The Gaussian misclassification theory (docs/math.md section 8.1) against known cases and Monte-Carlo draws, and the
robustness study under every noise kind (issue 18)."""

import dataclasses
import functools
import itertools
import json
import math

import numpy as np
import pytest
import torch
from synthetic_runs import write_run
from typer.testing import CliRunner

from creditzoo.algorithms import ALGORITHMS, get_algorithm, option_names
from creditzoo.algorithms.tp_grpo import turning_points
from creditzoo.algorithms.tp_margin import DEFAULT_MARGIN, TP_MARGIN, tp_margin
from creditzoo.analysis import load_records, noise_theory
from creditzoo.analysis.noise_theory import (
    TurningPointRule,
    bivariate_normal_cdf,
    clean_marks,
    flip_probability,
    mark_probabilities,
    ordering_probability,
    predict_flips,
    predict_turning_points,
    sign_change_rule,
    turning_point_patterns,
)
from creditzoo.analysis.robustness import counterfactual_study, parse_noise_list, theory_comparison
from creditzoo.cli import app
from creditzoo.rollout import Rollout

RULES = [TurningPointRule(strict, initial) for strict in (False, True) for initial in (True, False)]


def _grid_rewards(seed: int, trajectories: int, steps: int, levels: int = 8, scale: float = 0.2) -> np.ndarray:
    """Clean rewards [N, K+1] on a coarse grid, so that ties (d_k = 0, R_K = R_k, R_K = R_0) occur often."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, levels, size=(trajectories, steps + 1)) * (scale / levels)


# ----------------------------------------------------------------------------------------------- cases known exactly


def test_flip_probability_edge_cases_and_a_known_value() -> None:
    d = np.array([-0.3, -0.02, 0.0, 0.02, 0.3])
    assert np.array_equal(flip_probability(d, 0.0), np.zeros(5))  # no noise changes nothing, a tie included
    assert flip_probability(np.array([0.0]), 0.05)[0] == 0.5  # a tie gets either sign, equally likely
    sigma = 0.05  # d = sqrt(2) sigma is one SD of the noisy increment: Phi(-1)
    assert flip_probability(np.array([math.sqrt(2) * sigma]), sigma)[0] == pytest.approx(0.15865525393145707)
    flips = flip_probability(d, 0.05)
    assert flips[0] == flips[-1] and flips[1] == flips[3]  # symmetric in the sign of d
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        flip_probability(d, -0.1)


def test_bivariate_normal_cdf_matches_scipy() -> None:
    from scipy.stats import multivariate_normal

    values = np.array([-4.0, -1.3, -0.0, 0.0, 0.4, 2.5])
    h, k = (grid.ravel() for grid in np.meshgrid(values, values))
    for rho in (-1 / math.sqrt(2), 1 / math.sqrt(2), 0.3):
        reference = multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf(np.stack([h, k], axis=1))
        # scipy's bivariate cdf (Genz's algorithm) is accurate to ~1e-12; Owen's T formula to float rounding
        assert np.abs(bivariate_normal_cdf(h, k, rho) - reference).max() < 1e-9


@pytest.mark.parametrize("margin", [0.0, 0.06])
def test_clean_marks_are_the_library_rule_and_sigma_zero_gives_them(margin: float) -> None:
    """The theory's patterns, evaluated on the clean scores, are tp_grpo.turning_points (written independently), with
    the dead zone tp_margin passes it. Scores are multiples of 0.05, so a margin of 0.06 sits between two spacings
    and no difference lies on its edge (where float rounding would decide)."""
    for steps in range(1, 7):
        rewards = _grid_rewards(steps, 300, steps, levels=4)
        for strict, initial in itertools.product((False, True), (True, False)):
            rule = TurningPointRule(strict, initial, margin=margin)
            library = turning_points(torch.tensor(rewards), strict=strict, initial_step=initial, margin=margin)
            assert np.array_equal(clean_marks(rewards, rule), library.numpy()), (steps, rule)
            assert np.array_equal(mark_probabilities(rewards, 0.0, rule), library.numpy().astype(float))
            unmargined = clean_marks(rewards, rule.clean_version)
            if margin and unmargined.any():  # the dead zone drops marks here: the checks above see the margin
                assert not np.array_equal(unmargined, library.numpy()), (steps, rule)


def test_margin_zero_gives_the_numbers_of_the_rule_without_one() -> None:
    """Pinned P(marked) at sigma = 0.05, computed by noise_theory before orderings had offsets (commit 241427d)."""
    rewards = np.array([[0.18, 0.64, 0.47, 0.37, 0.35], [0.79, 0.91, 0.18, 0.65, 0.30], [0.97, 0.92, 0.64, 0.75, 0.52]])
    upward_free = [
        [0.9918952293229515, 0.008039083396438352, 0.07807175960315027, 0.3823455537180156],
        [0.04484301088729178, 0.9551569891127083, 2.1094682619713012e-12, 0.999999628434389],
        [0.7602499390045033, 0.23975003638194203, 2.7420757883571e-05, 0.9398692125602789],
    ]
    strict = [
        [2.054896336378925e-05, 0.008037181396321024, 0.0067607562598977645, 0.0],
        [0.0448430108851823, 0.0428321152599338, 1.0892438580845967e-13, 0.0],
        [0.7602499311981352, 0.2289989218771795, 2.739928683612325e-05, 0.0],
    ]
    for rule_strict, initial in itertools.product((False, True), (True, False)):
        pinned = np.array(strict if rule_strict else upward_free)
        if not initial:
            pinned[:, 0] = 0.0  # the *_noinit variants never mark step 0
        rule = TurningPointRule(rule_strict, initial, margin=0.0)
        assert rule == TurningPointRule(rule_strict, initial) and rule.name == rule.clean_version.name
        # the same float operations as then; a tolerance only for another platform's libm (1e-12 relative)
        assert mark_probabilities(rewards, 0.05, rule) == pytest.approx(pinned, rel=1e-12, abs=1e-15), rule


def test_a_margin_on_one_increment_is_known_exactly() -> None:
    """K = 1: the trend is the only increment, so the initial step is marked iff |D_0| > m, D_0 ~ N(d, 2 sigma^2):
    Phi((d - m) / (sqrt(2) sigma)) + Phi((-d - m) / (sqrt(2) sigma)); the strict rule asks R_K - R_K > m: never."""
    from scipy.stats import norm

    rewards = np.array([[0.5, 0.5], [0.5, 0.53], [0.5, 0.42]])
    sigma, margin = 0.04, 0.03
    d = rewards[:, 1] - rewards[:, 0]
    scale = math.sqrt(2) * sigma
    expected = norm.cdf((d - margin) / scale) + norm.cdf((-d - margin) / scale)
    got = mark_probabilities(rewards, sigma, TurningPointRule(strict=False, margin=margin))[:, 0]
    assert got == pytest.approx(expected, abs=1e-12)
    assert np.all(mark_probabilities(rewards, sigma, TurningPointRule(strict=True, margin=margin)) == 0)
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        TurningPointRule(margin=-0.01)


def test_worked_example_of_the_math() -> None:
    rewards = np.array([[0.50, 0.48, 0.47, 0.52, 0.51, 0.55]])  # docs/math.md section 3
    assert clean_marks(rewards, TurningPointRule(strict=False)).nonzero()[1].tolist() == [2, 4]
    assert clean_marks(rewards, TurningPointRule(strict=True)).nonzero()[1].tolist() == [2]


def _linear_extensions(pattern: list[tuple[int, int]]) -> float:
    """Share of the orderings of the pattern's scores that satisfy it (brute force over permutations)."""
    scores = sorted({i for pair in pattern for i in pair})
    if any(lo == hi for lo, hi in pattern):
        return 0.0
    good = 0
    for order in itertools.permutations(range(len(scores))):
        rank = dict(zip(scores, order, strict=True))
        good += all(rank[lo] < rank[hi] for lo, hi in pattern)
    return good / math.factorial(len(scores))


def test_equal_means_give_the_share_of_orderings_for_every_pattern() -> None:
    """Scores with equal means are exchangeable: every ordering of the distinct scores is equally likely, so a pattern's
    probability is the share of permutations satisfying it. Covers chains of 2-5 scores and the cycles that
    inclusion-exclusion resolves (strict step 1, and K = 2)."""
    for steps in range(1, 7):
        for rule in RULES:
            for step in range(steps):
                for pattern in turning_point_patterns(step, steps, rule):
                    expected = _linear_extensions(pattern)
                    got = ordering_probability(pattern, np.full((1, steps + 1), 0.3), 0.05)[0]
                    assert got == pytest.approx(expected, abs=1e-9), (steps, rule, step, pattern)
    assert ordering_probability([(0, 1), (1, 2), (2, 0)], np.zeros((1, 3)), 1.0)[0] == 0  # a directed cycle
    assert ordering_probability([(0, 1), (1, 0)], np.zeros((1, 2)), 1.0)[0] == 0


# ----------------------------------------------------------------------------------------------- Monte Carlo


@pytest.mark.parametrize("steps", [2, 3, 6])
def test_mark_probabilities_match_monte_carlo(steps: int) -> None:
    """Per (trajectory, step): the predicted P(marked) against the library's marks on M seeded noisy copies."""
    draws, trajectories = 4000, 25
    rewards = _grid_rewards(10 + steps, trajectories, steps)
    gen = torch.Generator().manual_seed(steps)
    for sigma in (0.02, 0.1):
        noise = sigma * torch.randn(draws, trajectories, steps + 1, generator=gen, dtype=torch.float64)
        noisy = (torch.tensor(rewards) + noise).reshape(-1, steps + 1)  # [M * N, K+1]
        for rule in RULES:
            marks = turning_points(noisy, strict=rule.strict, initial_step=rule.initial_step)
            frequency = marks.reshape(draws, trajectories, steps).double().mean(0).numpy()  # [N, K]
            predicted = mark_probabilities(rewards, sigma, rule)  # [N, K]
            # binomial SE of a frequency over M draws; 5 SE: with ~1,000 cells per run, a false alarm is ~1e-3 likely
            # (the draws are seeded, so the outcome is fixed); 1 / M covers p near 0 or 1
            se = np.sqrt(predicted * (1 - predicted) / draws)
            assert (np.abs(frequency - predicted) <= 5 * se + 1 / draws).all(), (sigma, rule)


@pytest.mark.parametrize("steps", [2, 3, 6])
def test_mark_probabilities_with_a_margin_match_monte_carlo(steps: int) -> None:
    """As above with tp_margin's dead zone, c = 0.39 and 1: the cycles (strict step 1, the strict initial step, K = 2)
    are resolved with offsets. The same draws are far from the prediction that ignores the margin."""
    draws, trajectories, sigma = 4000, 25, 0.05
    rewards = _grid_rewards(20 + steps, trajectories, steps)
    gen = torch.Generator().manual_seed(100 + steps)
    noise = sigma * torch.randn(draws, trajectories, steps + 1, generator=gen, dtype=torch.float64)
    noisy = (torch.tensor(rewards) + noise).reshape(-1, steps + 1)  # [M * N, K+1]
    for c in (0.39, 1.0):
        margin = c * math.sqrt(2) * sigma
        for strict, initial in itertools.product((False, True), (True, False)):
            marks = turning_points(noisy, strict=strict, initial_step=initial, margin=margin)
            frequency = marks.reshape(draws, trajectories, steps).double().mean(0).numpy()  # [N, K]
            rule = TurningPointRule(strict, initial, margin=margin)
            predicted = mark_probabilities(rewards, sigma, rule)  # [N, K]
            # 5 binomial SE + 1 / M, as above
            assert (np.abs(frequency - predicted) <= 5 * np.sqrt(predicted * (1 - predicted) / draws) + 1 / draws).all()
            ignored = mark_probabilities(rewards, sigma, rule.clean_version)  # 0 everywhere for strict noinit, K = 2
            if ignored.any():
                assert (np.abs(frequency - ignored) > 5 * np.sqrt(ignored * (1 - ignored) / draws) + 1 / draws).any()


def test_expected_precision_recall_and_flips_match_monte_carlo() -> None:
    draws, trajectories, steps, sigma = 3000, 40, 5, 0.05
    rewards = _grid_rewards(3, trajectories, steps)
    gen = torch.Generator().manual_seed(7)
    noise = sigma * torch.randn(draws, trajectories, steps + 1, generator=gen, dtype=torch.float64)
    noisy = torch.tensor(rewards) + noise  # [M, N, K+1]
    rule = TurningPointRule(strict=True)
    clean = torch.tensor(clean_marks(rewards, rule))  # [N, K]
    marks = turning_points(noisy.reshape(-1, steps + 1), strict=True).reshape(draws, trajectories, steps)
    hits = (marks & clean).sum((1, 2)).double()  # [M]
    marked = marks.sum((1, 2)).double()  # [M]
    prediction = predict_turning_points(rewards, sigma, rule)
    expected_marked = prediction.mark_rate_all * trajectories * steps
    expected_hits = prediction.recall_all * float(clean.sum())  # recall's denominator is fixed: E[hits] / |clean|
    # sums over the M draws: 5 standard errors of a mean (sample SD / sqrt M)
    assert abs(float(marked.mean()) - expected_marked) <= 5 * float(marked.std()) / math.sqrt(draws)
    assert abs(float(hits.mean()) - expected_hits) <= 5 * float(hits.std()) / math.sqrt(draws)
    assert prediction.precision_all == pytest.approx(expected_hits / expected_marked, rel=1e-6)

    flips = predict_flips(rewards, sigma)
    d_clean = np.diff(rewards, axis=1)  # [N, K]
    changed = (torch.sign(noisy.diff(dim=2)) != torch.sign(torch.tensor(d_clean))).double()  # [M, N, K]
    untied = torch.tensor(d_clean != 0)
    for k in range(steps):
        share = changed[:, untied[:, k], k].mean(1)  # [M] per draw
        se = float(share.std()) / math.sqrt(draws)
        assert abs(float(share.mean()) - flips.flip_rate[k]) <= 5 * se + 1e-12, k
        every = changed[:, :, k].mean(1)  # ties included: a tie always changes (sign 0 -> +-1)
        assert abs(float(every.mean()) - flips.sign_change_rate[k]) <= 5 * float(every.std()) / math.sqrt(draws)
    assert flips.tie_share == pytest.approx((d_clean == 0).mean(0).tolist())


def test_tp_margin_precision_and_recall_match_monte_carlo() -> None:
    """tp_margin itself (balancing off: the rule's marks), told sigma, on M noisy copies; the truth is its clean version
    (told 0) on the clean scores. Expected marks and hits against the rule sign_change_rule reads off the algorithm."""
    draws, trajectories, steps, sigma = 2000, 40, 5, 0.05
    rewards = _grid_rewards(8, trajectories, steps)
    gen = torch.Generator().manual_seed(9)
    noise = sigma * torch.randn(draws, trajectories, steps + 1, generator=gen, dtype=torch.float64)
    noisy = (torch.tensor(rewards) + noise).reshape(-1, steps + 1)  # [M * N, K+1]

    def marks(algorithm, scores: torch.Tensor) -> torch.Tensor:
        rollout = Rollout(group_ids=torch.arange(scores.shape[0]) // 4, completion_rewards=scores)
        return algorithm(rollout).turning_points  # [B, K]

    clean = marks(get_algorithm("tp_margin", balance=False), torch.tensor(rewards))  # [N, K]
    told = get_algorithm("tp_margin", balance=False, noise_sd=sigma)
    noisy_marks = marks(told, noisy).reshape(draws, trajectories, steps)  # [M, N, K]
    hits = (noisy_marks & clean).sum((1, 2)).double()  # [M]
    marked = noisy_marks.sum((1, 2)).double()  # [M]
    rule = sign_change_rule("tp_margin", noise_sd=sigma)
    assert rule == TurningPointRule(strict=True, initial_step=True, margin=DEFAULT_MARGIN * math.sqrt(2) * sigma)
    prediction = predict_turning_points(rewards, sigma, rule)
    assert prediction.reference == "tp_grpo_strict" and np.array_equal(
        clean.numpy(), clean_marks(rewards, rule.clean_version)
    )
    expected_marked = prediction.mark_rate_all * trajectories * steps
    expected_hits = prediction.recall_all * float(clean.sum())  # recall's denominator is fixed: E[hits] / |clean|
    # sums over the M draws: 5 standard errors of a mean (sample SD / sqrt M)
    se_marked, se_hits = float(marked.std()) / math.sqrt(draws), float(hits.std()) / math.sqrt(draws)
    assert abs(float(marked.mean()) - expected_marked) <= 5 * se_marked
    assert abs(float(hits.mean()) - expected_hits) <= 5 * se_hits
    assert prediction.precision_all == pytest.approx(expected_hits / expected_marked, rel=1e-6)
    ignored = predict_turning_points(rewards, sigma, rule.clean_version)  # the margin left out: far off
    assert abs(float(marked.mean()) - ignored.mark_rate_all * trajectories * steps) > 5 * se_marked
    assert abs(float(hits.mean()) - ignored.recall_all * float(clean.sum())) > 5 * se_hits


def test_approximations_differ_from_the_exact_prediction() -> None:
    """Ignoring the shared scores (independent) or the trend's noise (clean_trend) changes the prediction."""
    rewards = _grid_rewards(5, 60, 5)
    exact = mark_probabilities(rewards, 0.05, TurningPointRule(strict=True))
    for method in ("independent", "clean_trend"):
        approximate = mark_probabilities(rewards, 0.05, TurningPointRule(strict=True), method=method)
        assert np.abs(approximate - exact).max() > 0.01, method
    with pytest.raises(ValueError, match="unknown method 'guess'; valid: exact, independent, clean_trend"):
        mark_probabilities(rewards, 0.05, TurningPointRule(), method="guess")


def test_sign_change_rule_reads_the_algorithm(monkeypatch) -> None:
    assert sign_change_rule("tp_grpo") == TurningPointRule(strict=False, initial_step=True)
    assert sign_change_rule("tp_grpo_strict_noinit") == TurningPointRule(strict=True, initial_step=False)
    assert sign_change_rule("tp_grpo_strict_release") == TurningPointRule(strict=True, initial_step=True)
    assert sign_change_rule("flow_grpo") is None and sign_change_rule("incremental") is None
    assert sign_change_rule("tp_prob") is None and sign_change_rule("tp_grpo_strict_rts") is None
    assert sign_change_rule("tp_grpo", noise_sd=0.05) == TurningPointRule(strict=False)  # not told: no margin
    # tp_margin: the margin c sqrt(2) sigma of the SD it is told (none: its noise_sd option, 0 by default)
    assert sign_change_rule("tp_margin") == TurningPointRule(strict=True, initial_step=True, margin=0.0)
    told = sign_change_rule("tp_margin", noise_sd=0.05)
    assert told == TurningPointRule(strict=True, initial_step=True, margin=0.39 * math.sqrt(2) * 0.05)
    assert told.name == "tp_grpo_strict, margin 0.02758"
    loose = functools.partial(tp_margin, strict=False, initial_step=False, margin=1.0, noise_sd=0.02)
    monkeypatch.setitem(ALGORITHMS, "tp_margin_loose", dataclasses.replace(TP_MARGIN, fn=loose))
    assert sign_change_rule("tp_margin_loose") == TurningPointRule(False, False, margin=math.sqrt(2) * 0.02)
    assert sign_change_rule("tp_margin_loose", noise_sd=0.1) == TurningPointRule(
        False, False, margin=math.sqrt(2) * 0.1
    )
    with pytest.raises(ValueError, match="noise_sd"):
        sign_change_rule("tp_margin", noise_sd=-1.0)
    monkeypatch.setattr(noise_theory, "SIGN_CHANGE_OPTIONS", frozenset({"strict", "initial_step"}))
    assert sign_change_rule("tp_grpo") is None  # a kernel with an option the theory does not know is left out
    assert sign_change_rule("tp_margin") is not None  # its own list: MARGIN_OPTIONS was built at import


# ----------------------------------------------------------------------------------------------- the comparison


def _run_records(tmp_path, seed: int = 0, iterations: int = 3, groups: int = 4, size: int = 4, steps: int = 5):
    gen = torch.Generator().manual_seed(seed)
    records = []
    for _ in range(iterations):
        rewards = torch.randint(0, 8, (groups * size, steps + 1), generator=gen).float() / 32  # ties; exact in float32
        records.append((rewards, torch.arange(groups).repeat_interleave(size)))
    return load_records(write_run(tmp_path / "run", records=records))


def test_theory_comparison_rows_match_their_sources(tmp_path) -> None:
    records = _run_records(tmp_path)
    specs = parse_noise_list(["gaussian:0", "gaussian:0.05", "uniform:0.1"])
    rows = theory_comparison(records, specs, algos=["flow_grpo", "tp_grpo_strict"], repeats=8, seed=1)
    cell = {(r.noise, r.subject, r.quantity, r.step): r for r in rows}
    assert {r.noise for r in rows} == {"gaussian:0.0", "gaussian:0.05"}  # uniform noise has no theory
    assert {r.subject for r in rows} == {"increments", "rule:tp_grpo_strict", "tp_grpo_strict"}
    clean = torch.cat([r.completion_rewards(clean=True) for r in records]).double().numpy()
    unbalanced = clean_marks(clean, TurningPointRule(strict=True))
    balanced = torch.cat([get_algorithm("tp_grpo_strict")(r.rollout(clean=True)).turning_points for r in records])
    for step in range(5):  # no noise: measured = predicted = the clean marks, before and after balancing
        rate = cell[("gaussian:0.0", "rule:tp_grpo_strict", "mark_rate", step)]
        assert rate.predicted == pytest.approx(unbalanced[:, step].mean())
        assert rate.measured.mean == pytest.approx(rate.predicted, abs=1e-6)  # the measurement is kept to 6 digits
        credited = cell[("gaussian:0.0", "tp_grpo_strict", "mark_rate", step)]
        assert credited.measured.mean == pytest.approx(float(balanced[:, step].float().mean()), abs=1e-6)
        assert cell[("gaussian:0.0", "increments", "flip_rate", step)].measured.mean == 0
    rate = cell[("gaussian:0.05", "rule:tp_grpo_strict", "mark_rate", None)]
    # 48 trajectories x 5 steps x 8 repeats; marks of one trajectory may be correlated, so bound the SE by treating a
    # trajectory's 5 marks as one Bernoulli (design effect <= K): SE <= sqrt(0.25 / (48 * 8)) = 0.026; 5 SE
    assert abs(rate.measured.mean - rate.predicted) <= 5 * 0.026
    flips = cell[("gaussian:0.05", "increments", "flip_rate", None)]
    assert abs(flips.measured.mean - flips.predicted) <= 5 * math.sqrt(0.25 / (48 * 8))
    assert flips.measured.low < flips.measured.mean < flips.measured.high  # eight different draws
    assert cell[("gaussian:0.05", "increments", "tie_share", None)].measured is None


def test_theory_comparison_predicts_tp_margin_with_the_margin_it_is_told(tmp_path) -> None:
    """tp_margin's rows: at sigma = 0 its rule is tp_grpo_strict's; at 0.05 it is told 0.05, and its measured rate,
    recall and precision before balancing follow the prediction with margin 0.39 sqrt(2) 0.05, not the one without."""
    from scipy.stats import t as student_t

    records = _run_records(tmp_path)
    specs = parse_noise_list(["gaussian:0", "gaussian:0.05"])
    repeats = 40
    rows = theory_comparison(records, specs, algos=["tp_margin", "tp_grpo_strict"], repeats=repeats, seed=1)
    cell = {(r.noise, r.subject, r.quantity, r.step): r for r in rows}
    assert {r.subject for r in rows} == {
        "increments",
        "rule:tp_margin",
        "tp_margin",
        "rule:tp_grpo_strict",
        "tp_grpo_strict",
    }
    for quantity, step in itertools.product(("mark_rate", "precision", "recall"), [*range(5), None]):
        margin, plain = (
            cell[("gaussian:0.0", subject, quantity, step)] for subject in ("rule:tp_margin", "rule:tp_grpo_strict")
        )
        assert (margin.predicted, margin.measured) == (plain.predicted, plain.measured)  # told 0: no margin
    clean = torch.cat([r.completion_rewards(clean=True) for r in records]).double().numpy()  # [48, 6]
    truth = clean_marks(clean, TurningPointRule(strict=True))  # the clean version's marks [48, 5]
    p = mark_probabilities(clean, 0.05, TurningPointRule(strict=True, margin=0.39 * math.sqrt(2) * 0.05))  # [48, 5]
    expected = {
        "mark_rate": p.mean(),
        "recall": (truth * p).sum() / truth.sum(),
        "precision": (truth * p).sum() / p.sum(),
    }
    # a mean over repeats: its SE is the 95% t interval's half-width / t(0.975, n - 1); the pooled precision (a ratio
    # of sums over ~1,000 marks, bias O(1 / 1,000)) varies no more than the mean of the per-repeat ratios
    critical = student_t.ppf(0.975, repeats - 1)
    for quantity, value in expected.items():
        measured = cell[("gaussian:0.05", "rule:tp_margin", quantity, None)]
        assert measured.predicted == pytest.approx(value, abs=1e-8)  # predictions are kept to 9 digits
        se = (measured.measured.high - measured.measured.low) / (2 * critical)
        observed = measured.pooled if quantity == "precision" else measured.measured.mean
        assert abs(observed - value) <= 5 * se, quantity
        if quantity != "precision":  # the prediction without the margin is far off (precision moves less)
            assert abs(observed - cell[("gaussian:0.05", "rule:tp_grpo_strict", quantity, None)].predicted) > 5 * se
    credited = cell[("gaussian:0.05", "tp_margin", "mark_rate", None)]  # balanced, told 0.05: fewer marks still
    assert credited.predicted == cell[("gaussian:0.05", "rule:tp_margin", "mark_rate", None)].predicted
    assert credited.measured.mean < cell[("gaussian:0.05", "tp_grpo_strict", "mark_rate", None)].measured.mean


@pytest.mark.slow
def test_robustness_command_prints_and_plots_the_theory(tmp_path) -> None:
    run = write_run(tmp_path / "run")
    runner = CliRunner()
    args = ["analyze", "robustness", str(run), "--noise", "gaussian:0.05", "--noise", "bias:0.1", "--repeats", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Increment sign flips under Gaussian noise" in result.output
    assert "Turning points of tp_grpo_strict's rule before balancing" in result.output
    saved = json.loads((run / "analysis" / "robustness.json").read_text())
    assert {row["noise"] for row in saved["theory"]} == {"gaussian:0.05"}
    for name in ("increments", "tp_grpo", "tp_grpo_strict"):
        assert (run / "analysis" / f"theory_{name}.png").stat().st_size > 5000
    quiet = runner.invoke(app, [*args, "--no-theory", "--json", "--out", str(tmp_path / "quiet")])
    assert quiet.exit_code == 0 and json.loads(quiet.output)["theory"] == []
    assert not (tmp_path / "quiet" / "theory_increments.png").exists()


# ----------------------------------------------------------------------------------------------- every noise kind

CHAIN_ALGOS = [name for name, spec in ALGORITHMS.items() if spec.shape == "chain"]
KINDS = ["bias:0.1", "student_t:3:0.05", "flip:0.2", "quantize:0.05", "uniform:0.05", "gaussian:0.05"]


def test_every_chain_scheme_runs_under_every_noise_kind(tmp_path) -> None:
    records = _run_records(tmp_path, iterations=2)
    specs = parse_noise_list([*KINDS, "flip:0", "student_t:3:0", "quantize:0.03125"])
    effects = counterfactual_study(records, specs, algos=CHAIN_ALGOS, repeats=2)
    assert [(e.noise, e.algo) for e in effects] == [(str(s), a) for s in specs for a in CHAIN_ALGOS]
    for effect in effects:
        assert 0 <= effect.advantage_sign_agreement.mean <= 1
        # no-ops: rewards are k / 32. A noise-aware scheme is told quantize's SD STEP / sqrt(12) > 0, so it credits
        # differently from its clean version even where rounding changed nothing; the zero-SD no-ops hold for all.
        aware = "noise_sd" in option_names(ALGORITHMS[effect.algo].fn)
        no_ops = ("flip:0.0", "student_t:3.0:0.0") + (() if aware else ("quantize:0.03125",))
        if effect.noise in no_ops:
            assert effect.advantage_sign_agreement.mean == 1 and effect.increment_sign_change.mean == 0
            assert effect.tp_precision is None or (effect.tp_precision.mean, effect.tp_recall.mean) == (1, 1)
        elif effect.noise not in ("bias:0.1", "quantize:0.03125"):
            assert effect.increment_sign_change.mean > 0


def _shifted(seed: int) -> tuple[Rollout, Rollout]:
    """A batch and the same batch with one offset per group on every score (a per-prompt bias).

    Rewards and offsets are multiples of 1/64, so every sum and difference is exact in float64: the offset then cancels
    exactly wherever the math says it cancels, with no rounding left to break a tie (e.g. in balancing).
    """
    gen = torch.Generator().manual_seed(seed)
    groups, size, steps = 4, 4, 6
    rewards = torch.randint(0, 64, (groups * size, steps + 1), generator=gen).double() / 64  # [B, K+1]
    group_ids = torch.arange(groups).repeat_interleave(size)
    offsets = torch.randint(-32, 32, (groups,), generator=gen).double() / 64  # [G]
    shifted = rewards + offsets[group_ids].unsqueeze(1)
    return Rollout(group_ids=group_ids, completion_rewards=rewards), Rollout(
        group_ids=group_ids, completion_rewards=shifted
    )


@pytest.mark.parametrize("std_mode", ["group", "global", "none"])
def test_a_per_prompt_bias_cancels_where_the_math_says(std_mode: str) -> None:
    """bias adds b_g to every R_k of group g. Differences (d_k, r_agg, R_K - R_0, g) lose it: schemes built on them
    keep their step rewards and turning points. Schemes crediting a level (R_K, R_{k+1}) shift by b_g; the group mean
    takes it out and the group std is unchanged, so their advantages stay, except with std_mode="global", whose batch
    std sees the spread of the offsets between groups."""
    differences = [name for name in CHAIN_ALGOS if name not in ("flow_grpo", "dense_value")]
    for seed in range(3):
        clean, biased = _shifted(seed)
        for name in CHAIN_ALGOS:
            algorithm = get_algorithm(name, std_mode=std_mode)
            before, after = algorithm(clean), algorithm(biased)
            assert torch.equal(before.turning_points, after.turning_points), name
            if name in differences:
                assert torch.equal(before.step_rewards, after.step_rewards), name
            else:
                assert not torch.equal(before.step_rewards, after.step_rewards), name
            same = torch.allclose(before.advantages, after.advantages, rtol=0, atol=1e-12)  # exact arithmetic
            assert same == (name in differences or std_mode != "global"), (name, std_mode)


def test_quantizing_never_creates_a_turning_point() -> None:
    """A non-decreasing map of the scores keeps or merges orderings, never reverses one: marks can only be lost."""
    from creditzoo.rewards.noise import NoisyReward, parse_noise_spec

    clean = torch.rand(200, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)  # [N, K+1]
    reward = NoisyReward(lambda scores, prompts: scores, parse_noise_spec("quantize:0.1"))
    quantized = reward(clean.reshape(-1), ["p"] * clean.numel()).view_as(clean)
    for rule in RULES:
        before = turning_points(clean, strict=rule.strict, initial_step=rule.initial_step)
        after = turning_points(quantized, strict=rule.strict, initial_step=rule.initial_step)
        assert not (after & ~before).any(), rule  # precision 1
        assert (before & ~after).any(), rule  # some lost to ties: recall < 1


def test_bias_leaves_every_scheme_unchanged_in_the_counterfactual(tmp_path) -> None:
    """Through the study itself (float32 records, offsets not on a grid): the offset cancels up to float rounding."""
    effects = counterfactual_study(
        _run_records(tmp_path), parse_noise_list(["bias:0.2"]), algos=["incremental", "tp_grpo", "tp_grpo_strict"]
    )
    for effect in effects:
        assert effect.increment_sign_change.mean == 0  # rewards are multiples of 1/32 apart: rounding cannot flip one
        assert effect.advantage_spearman.mean == pytest.approx(1.0, abs=1e-6)


def test_noise_aware_schemes_are_told_the_injected_noise(tmp_path) -> None:
    """A scheme with a ``noise_sd`` option replays with the injected noise's SD, not as its clean version."""
    from creditzoo.algorithms import get_algorithm
    from creditzoo.analysis.robustness import _noisy_rollouts, _score_prompts
    from creditzoo.rewards.noise import per_call_sd

    records = _run_records(tmp_path, iterations=2)
    spec = parse_noise_list(["gaussian:0.05"])[0]
    assert per_call_sd(spec) == 0.05
    effect = counterfactual_study(records, [spec], algos=["tp_margin"], repeats=1)[0]
    # the same copy by hand: the scheme told sigma = 0.05, against its clean version
    rollouts = _noisy_rollouts(records, [_score_prompts(r) for r in records], spec, seed=0, repeat=0)
    told, clean = get_algorithm("tp_margin", noise_sd=0.05), get_algorithm("tp_margin")
    noisy = torch.cat([told(rollout).advantages for rollout in rollouts])
    reference = torch.cat([clean(record.rollout(clean=True)).advantages for record in records])
    agreement = float((torch.sign(noisy) == torch.sign(reference)).float().mean())
    assert abs(effect.advantage_sign_agreement.mean - agreement) <= 5e-7  # Estimate keeps 6 decimals
    untold = torch.cat([clean(rollout).advantages for rollout in rollouts])
    assert not torch.equal(noisy, untold)  # the margin changed the credit, so the check above can tell them apart
