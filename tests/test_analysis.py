"""`creditzoo analyze turning-points | compare | robustness` on synthetic run directories with known answers."""

import json

import numpy as np
import pytest
import torch
from import_probe import loaded_by
from synthetic_runs import write_run, write_sweep
from typer.testing import CliRunner

from creditzoo.analysis import load_records, recompute
from creditzoo.analysis.compare import CompareOptions, compare_runs, first_crossing, first_crossings
from creditzoo.analysis.robustness import counterfactual_study, spearman
from creditzoo.analysis.runs import load_run
from creditzoo.analysis.turning_points import turning_point_report
from creditzoo.cli import app
from creditzoo.rewards.noise import parse_noise_spec

runner = CliRunner()


def analyze(*args: str):
    return runner.invoke(app, ["analyze", *args])


# ----------------------------------------------------------------------------------------------- turning points


def test_known_turning_points_give_known_frequencies(tmp_path) -> None:
    run = write_run(tmp_path / "run")
    report = turning_point_report(load_records(run), config=json.loads((run / "config.json").read_text()))
    assert report.iterations == [1, 2] and report.trajectories == 8 and report.steps == 5
    assert report.zero_increment_share == pytest.approx(20 / 40)  # D's five increments, once then three times
    assert report.no_trend_share == pytest.approx(4 / 8)
    assert report.recorded_matches_replay is True
    tp = report.variants["tp_grpo"]
    # iteration 1 marks A2 A4 B0 (+) and C2 C4 (-): P = 3 > N = 2, balancing drops A4 (smallest |r_agg|)
    assert (tp.total, tp.before_balancing, tp.removed_by_balancing) == (5, 6, 1)
    assert (tp.positive, tp.negative) == (3, 2)
    assert tp.rate_per_step == pytest.approx([2 / 8, 0, 2 / 8, 0, 1 / 8])
    assert tp.rate_per_iteration == pytest.approx([4 / 20, 1 / 20])
    assert tp.heatmap[0] == pytest.approx([0.25, 0.25]) and tp.heatmap[2] == pytest.approx([0.5, 0.0])
    assert tp.initial_share == pytest.approx(2 / 5)
    assert tp.per_trajectory == [4, 3, 1, 0, 0, 0]
    strict = report.variants["tp_grpo_strict"]  # A2 B0 C2 marked, balancing keeps B0 and C2; iteration 2: B0
    assert (strict.total, strict.removed_by_balancing, strict.positive, strict.negative) == (3, 1, 2, 1)
    noinit = report.variants["tp_grpo_noinit"]  # A2 A4 C2 C4: already balanced
    assert (noinit.total, noinit.removed_by_balancing, noinit.initial_share) == (4, 0, 0.0)
    assert report.variants["tp_grpo_strict_noinit"].total == 2
    pairs = {(p.first, p.second): p for p in report.agreement}
    assert pairs[("tp_grpo", "tp_grpo_strict")].jaccard == pytest.approx(3 / 5)
    assert pairs[("tp_grpo", "tp_grpo_strict")].equal_share == pytest.approx(38 / 40)
    assert pairs[("tp_grpo", "tp_grpo_noinit")].jaccard == pytest.approx(3 / 6)
    assert len(report.agreement) == 15  # 6 variants, 2 of them the released rule's
    # the released rule marks as tp_grpo / tp_grpo_strict and balances nothing: the unbalanced counts above
    release = report.variants["tp_grpo_release"]  # A2 A4 B0 (+) C2 C4 (-), iteration 2: B0 (+)
    assert (release.total, release.removed_by_balancing, release.positive, release.negative) == (6, 0, 4, 2)
    strict_release = report.variants["tp_grpo_strict_release"]  # A2 B0 C2, iteration 2: B0
    assert (strict_release.total, strict_release.removed_by_balancing) == (4, 0)
    assert (strict_release.positive, strict_release.negative) == (3, 1)
    assert pairs[("tp_grpo", "tp_grpo_release")].jaccard == pytest.approx(5 / 6)  # A4 dropped by balancing only


def test_a_released_rule_run_replays_its_own_turning_points(tmp_path) -> None:
    run = write_run(tmp_path / "run", algo="tp_grpo_strict_release")
    report = turning_point_report(load_records(run), config=json.loads((run / "config.json").read_text()))
    assert report.recorded_algo == "tp_grpo_strict_release" and report.recorded_matches_replay is True
    other = write_run(tmp_path / "other", algo="tp_grpo_strict")  # balanced marks differ from the released rule's
    records = load_records(other)
    replay = turning_point_report(records, config={"algo": "tp_grpo_strict_release"})
    assert replay.recorded_matches_replay is False


@pytest.mark.slow
def test_turning_points_command_writes_json_table_and_figures(tmp_path) -> None:
    run = write_run(tmp_path / "run")
    result = analyze("turning-points", f"{run}/")  # trailing slash accepted
    assert result.exit_code == 0, result.output
    assert "Turning points in" in result.output and "Pairwise agreement" in result.output
    out = run / "analysis"
    saved = json.loads((out / "turning_points.json").read_text())
    assert saved["variants"]["tp_grpo"]["total"] == 5
    for name in ("heatmap", "per_step", "per_trajectory", "agreement"):
        assert (out / f"turning_points_{name}.png").stat().st_size > 5000
    printed = analyze("turning-points", str(run), "--json", "--out", str(tmp_path / "elsewhere"))
    assert printed.exit_code == 0 and json.loads(printed.output)["variants"]["tp_grpo_noinit"]["total"] == 4


@pytest.mark.parametrize("command", ["turning-points", "robustness"])
def test_flow_grpo_run_has_no_completion_rewards_to_replay(tmp_path, command) -> None:
    run = write_run(tmp_path / "run", algo="flow_grpo")
    result = analyze(command, str(run))
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "no completion rewards" in result.output


# ----------------------------------------------------------------------------------------------- robustness


def _random_records(seed: int, iterations: int = 3, groups: int = 4, size: int = 4, steps: int = 6):
    gen = torch.Generator().manual_seed(seed)
    records = []
    for _ in range(iterations):
        rewards = torch.rand(groups * size, steps + 1, generator=gen)
        records.append((rewards, torch.arange(groups).repeat_interleave(size)))
    return records


def test_zero_noise_gives_precision_recall_and_agreement_one(tmp_path) -> None:
    run = write_run(tmp_path / "run", records=_random_records(0))
    effects = counterfactual_study(load_records(run), [parse_noise_spec("gaussian:0"), None], repeats=3)
    assert {e.algo for e in effects} == {"flow_grpo", "incremental", "tp_grpo", "tp_grpo_strict"}
    for e in effects:
        assert e.advantage_sign_agreement.mean == 1 and e.increment_sign_change.mean == 0
        assert e.advantage_spearman.mean == pytest.approx(1.0)
        if e.algo.startswith("tp_grpo"):
            assert (e.tp_precision.mean, e.tp_recall.mean) == (1.0, 1.0)
        else:
            assert e.tp_precision is None and e.tp_recall is None


def test_noise_lowers_agreement_and_repeats_differ(tmp_path) -> None:
    run = write_run(tmp_path / "run", records=_random_records(1))
    records = load_records(run)
    small, large = counterfactual_study(
        records, [parse_noise_spec("gaussian:0.01"), parse_noise_spec("gaussian:1")], algos=["tp_grpo"], repeats=6
    )
    assert small.tp_recall.mean < 1 or small.tp_precision.mean < 1
    assert large.tp_recall.mean < small.tp_recall.mean
    assert large.advantage_spearman.mean < small.advantage_spearman.mean < 1
    assert large.tp_recall.low < large.tp_recall.high  # six different draws
    again = counterfactual_study(records, [parse_noise_spec("gaussian:1")], algos=["tp_grpo"], repeats=6)[0]
    assert again == large  # seeded


def test_quantized_to_nothing_has_known_effect(tmp_path) -> None:
    """quantize:10 turns every reward in [0, 1) into 0: no noisy turning point, no sign, zero advantages."""
    run = write_run(tmp_path / "run")
    records = load_records(run)
    effect = counterfactual_study(records, [parse_noise_spec("quantize:10")], algos=["tp_grpo"], repeats=1)[0]
    clean = torch.cat([r.tensors["completion_rewards_clean"] for r in records])
    nonzero = float((clean.diff(dim=1) != 0).float().mean())
    assert effect.increment_sign_change.mean == pytest.approx(nonzero)
    assert (effect.tp_precision.mean, effect.tp_recall.mean) == (1.0, 0.0)  # nothing marked, everything missed
    clean_adv = torch.cat([c.advantages for c in recompute(records, "tp_grpo", clean=True)])
    assert effect.advantage_spearman is None  # the noisy advantages are constant
    assert effect.advantage_sign_agreement.mean == pytest.approx(float((clean_adv == 0).float().mean()))


def test_spearman_matches_a_slow_definition() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    a[:5] = 0.0  # ties
    ranks = lambda x: np.array([np.mean(np.nonzero(np.sort(x) == v)[0]) + 1 for v in x])  # noqa: E731
    expected = np.corrcoef(ranks(a), ranks(b))[0, 1]
    assert spearman(a, b) == pytest.approx(expected)
    assert spearman(a, np.ones(50)) is None


@pytest.mark.slow
def test_robustness_command_on_a_run_and_on_a_noise_sweep(tmp_path) -> None:
    run = write_run(tmp_path / "run", records=_random_records(2))
    result = analyze("robustness", str(run), "--repeats", "2", "--noise", "gaussian:0", "--noise", "uniform:0.2")
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "analysis" / "robustness.json").read_text())
    assert len(saved["counterfactual"]) == 8 and "tp_grpo" in saved["recorded_noisy_vs_clean"]
    assert (run / "analysis" / "robustness_uniform.png").exists()
    runs = {}
    for algo in ("flow_grpo", "tp_grpo_strict"):
        for noise, drop in (("none", 0.0), ("gaussian:0.1", 0.05)):
            for seed in range(3):
                final = 0.7 - drop + 0.01 * seed + (0.05 if algo == "tp_grpo_strict" else 0)
                runs[f"{algo}-{noise}-{seed}"] = dict(
                    algo=algo,
                    seed=seed,
                    reward_noise=None if noise == "none" else noise,
                    records=_random_records(seed, iterations=2),
                    test_scores={0: 0.5, 2: final},
                )
    sweep = write_sweep(tmp_path / "sweep", runs)
    result = analyze("robustness", str(sweep), "--repeats", "2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    cells = {(s["algo"], s["level"]): s for s in report["noise_sweep"]}
    assert cells[("flow_grpo", 0.0)]["score"]["mean"] == pytest.approx(0.71)
    assert cells[("tp_grpo_strict", 0.1)]["score"]["mean"] == pytest.approx(0.71)
    assert cells[("flow_grpo", 0.1)]["seeds"] == 3
    assert "tp_grpo_strict-none-0" in report["counterfactual_run"]
    assert (sweep / "analysis" / "robustness_sweep.png").stat().st_size > 5000


# ----------------------------------------------------------------------------------------------- compare


def _curve_sweep(tmp_path):
    """Baseline: 0.5 + 0.005 * it, final mean 0.7 (reached at 40); tp: 0.5 + 0.008 * it, crosses 0.7 at 25."""
    runs = {}
    for seed, offset in enumerate((-0.01, 0.0, 0.01)):
        for algo, slope, evals, seconds in (("flow_grpo", 0.005, 100.0, 1.0), ("tp_grpo_strict", 0.008, 300.0, 2.0)):
            runs[f"{algo}-{seed}"] = dict(
                algo=algo,
                seed=seed,
                records=[],
                model_evals=evals,
                seconds=seconds,
                test_scores={i: 0.5 + slope * i + (offset if i else 0.0) for i in (0, 10, 20, 30, 40)},
                train_rewards=[0.4 + slope * i for i in range(1, 41)],
                categories={"counting": 0.3 + slope * 10, "colors": 0.9},
            )
    return write_sweep(tmp_path / "sweep", runs)


def test_compare_finds_the_known_crossing_and_ratios(tmp_path) -> None:
    sweep = _curve_sweep(tmp_path)
    from creditzoo.analysis.runs import expand_run_dirs

    comparison = compare_runs([load_run(p) for p in expand_run_dirs([sweep])], CompareOptions(resamples=200))
    assert comparison.baseline == "flow_grpo" and comparison.threshold == pytest.approx(0.7)
    base, tp = comparison.groups
    assert base.to_threshold["iterations"].value == pytest.approx(40)
    assert tp.to_threshold["iterations"].value == pytest.approx(25)
    assert tp.to_threshold["iterations"].ratio == pytest.approx(25 / 40)
    assert tp.to_threshold["model_evals"].ratio == pytest.approx(25 * 300 / (40 * 100))
    assert tp.to_threshold["seconds"].ratio == pytest.approx(25 * 2 / 40)
    crossing = tp.to_threshold["iterations"]
    assert crossing.low <= 25 <= crossing.high and crossing.reached_share == 1.0
    assert tp.contrast.difference == pytest.approx(0.12) and tp.contrast.p_value < 0.001
    assert tp.categories == {"colors": pytest.approx(0.9), "counting": pytest.approx(0.38)}
    assert tp.test_curve.model_evals == [0, 3000, 6000, 9000, 12000]
    assert len(tp.train_curve.mean) == 40


def test_first_crossing_interpolates() -> None:
    its = np.array([0, 10, 20])
    crossing = first_crossing(its, np.array([0.1, 0.3, 0.5]), {"model_evals": np.array([0, 100, 300.0])}, 0.4)
    assert crossing == {"iterations": pytest.approx(15), "model_evals": pytest.approx(200)}
    assert first_crossing(its, np.array([0.1, 0.3, 0.5]), {}, 0.6) is None


def test_vectorised_crossings_match_the_loop() -> None:
    rng = np.random.default_rng(0)
    its = np.array([0, 10, 20, 30, 40])
    curves = np.cumsum(rng.uniform(-0.05, 0.1, size=(200, 5)), axis=1)  # [R, J], some never reach
    costs = np.cumsum(rng.uniform(50, 150, size=(200, 5)), axis=1)
    fast = first_crossings(curves, {"iterations": np.broadcast_to(its, curves.shape), "model_evals": costs}, 0.2)
    for r in range(200):
        slow = first_crossing(its, curves[r], {"model_evals": costs[r]}, 0.2)
        if slow is None:
            assert np.isnan(fast["iterations"][r]) and np.isnan(fast["model_evals"][r])
        else:
            assert fast["iterations"][r] == pytest.approx(slow["iterations"])
            assert fast["model_evals"][r] == pytest.approx(slow["model_evals"])
    assert 0 < np.isnan(fast["iterations"]).sum() < 200


@pytest.mark.slow
def test_compare_command_writes_report_and_figures(tmp_path) -> None:
    sweep = _curve_sweep(tmp_path)
    result = analyze("compare", str(sweep))
    assert result.exit_code == 0, result.output
    report = (sweep / "analysis" / "report.md").read_text()
    assert "| 1 | tp_grpo_strict | 3 |" in report and "compare_curves.png" in report
    for name in ("final", "curves", "budget", "threshold", "categories"):
        assert (sweep / "analysis" / f"compare_{name}.png").stat().st_size > 5000
    runs = sorted(str(p) for p in (sweep / "runs").iterdir())
    unfinished = write_run(tmp_path / "unfinished", algo="incremental", records=[], test_scores={0: 0.5, 10: 0.9})
    config = json.loads((unfinished / "config.json").read_text())
    (unfinished / "config.json").write_text(json.dumps({**config, "iterations": 40}))
    printed = analyze("compare", *runs, str(unfinished), "--threshold", "0.6", "--json", "--out", str(tmp_path / "o"))
    assert printed.exit_code == 0, printed.output
    result = json.loads(printed.stdout)  # warnings (provenance unknown) go to stderr
    assert result["groups"][1]["to_threshold"]["iterations"]["value"] == pytest.approx(12.5)
    assert len(result["groups"]) == 2 and "unfinished (iteration 10 of 40)" in result["skipped"][0]
    assert "unfinished (iteration 10 of 40)" in (tmp_path / "o" / "report.md").read_text()


def test_a_stratified_final_figure_keeps_its_legend_below_the_axis_labels(tmp_path, monkeypatch) -> None:
    """The legend under a grid's panels sits in the room kept for it, not over the x-axis labels."""
    from creditzoo.analysis import plots

    paths = [
        write_run(
            tmp_path / f"{algo}-{level}-{seed}",
            algo=algo,
            seed=seed,
            records=[],
            reward_noise=None if level == "none" else "gaussian:0.1",
            test_scores={0: 0.5, 2: 0.6 + 0.01 * seed},
        )
        for algo in ("flow_grpo", "tp_grpo_strict")
        for level in ("none", "noisy")
        for seed in (0, 1)
    ]
    comparison = compare_runs([load_run(p) for p in paths])
    assert comparison.strata == ["reward_noise"]
    closed = []
    monkeypatch.setattr(plots.plt, "close", closed.append)  # keep the figure _save would close
    plots._final_figure(comparison, tmp_path / "final.png")
    (figure,) = closed
    renderer = figure.canvas.get_renderer()
    (legend,) = figure.legends
    legend_top = legend.get_window_extent(renderer).y1
    lowest_label = min(ax.get_tightbbox(renderer).y0 for ax in figure.axes)  # tick labels and x label included
    monkeypatch.undo()
    plots.plt.close(figure)
    assert legend_top <= lowest_label, (legend_top, lowest_label)


# ----------------------------------------------------------------------------------------------- bad input


def _corrupt_metrics(tmp_path):
    run = write_run(tmp_path / "run")
    path = run / "metrics.jsonl"
    path.write_text(path.read_text()[:-20] + "\n")
    return [str(run)], f"{path}:3: corrupt or truncated metrics line"


def _truncated_record(tmp_path):
    run = write_run(tmp_path / "run")
    path = run / "rollouts" / "iter_000002.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    return [str(run)], "corrupt or truncated rollout record"


@pytest.mark.parametrize(
    ("command", "make", "message"),
    [
        ("turning-points", lambda t: ([str(t / "missing")], "does not exist"), None),
        ("turning-points", lambda t: ((t / "e").mkdir() or [str(t / "e")], "is empty"), None),
        ("turning-points", _truncated_record, None),
        ("robustness", lambda t: ([str(t / "missing")], "does not exist"), None),
        ("robustness", _truncated_record, None),
        ("compare", lambda t: ([str(t / "missing")], "does not exist"), None),
        ("compare", lambda t: ((t / "e").mkdir() or [str(t / "e")], "is empty"), None),
        ("compare", _corrupt_metrics, None),
    ],
)
def test_bad_run_directories_are_one_line_and_exit_2(tmp_path, command, make, message) -> None:
    args, expected = make(tmp_path)
    result = analyze(command, *args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert expected in result.output


def test_different_envs_or_rewards_do_not_compare(tmp_path) -> None:
    a = write_run(tmp_path / "a", records=[], test_scores={0: 0.5, 2: 0.6})
    b = write_run(tmp_path / "b", records=[], test_scores={0: 0.5, 2: 0.6}, reward="geneval")
    result = analyze("compare", str(a), str(b))
    assert result.exit_code == 2 and "runs of different rewards in one comparison" in result.output
    assert result.output.count("\n") == 1


def test_a_run_named_twice_is_refused(tmp_path) -> None:
    sweep = _curve_sweep(tmp_path)
    result = analyze("compare", str(sweep), str(sweep / "runs" / "flow_grpo-0"))
    assert result.exit_code == 2 and "holds seed 0 twice" in result.output and result.output.count("\n") == 1


def test_unreachable_threshold_and_missing_baseline(tmp_path) -> None:
    sweep = _curve_sweep(tmp_path)
    result = analyze("compare", str(sweep), "--threshold", "0.99")
    assert result.exit_code == 2 and "no group reaches the threshold 0.9900" in result.output
    result = analyze("compare", str(sweep), "--baseline", "incremental")
    assert result.exit_code == 2 and "no baseline group 'incremental'" in result.output


def test_noise_spec_that_does_not_parse(tmp_path) -> None:
    run = write_run(tmp_path / "run")
    result = analyze("robustness", str(run), "--noise", "gaussian:loud")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "malformed reward noise 'gaussian:loud'" in result.output


@pytest.mark.slow
def test_cli_and_analysis_import_no_plotting() -> None:
    imports = (
        "creditzoo.cli, creditzoo.analysis, creditzoo.analysis.compare, creditzoo.analysis.robustness,"
        " creditzoo.analysis.turning_points, creditzoo.analysis.runs"
    )
    assert loaded_by(imports, ("seaborn", "matplotlib"), timeout=300) == []


def test_per_prompt_bias_changes_no_credit(tmp_path) -> None:
    """bias:SD adds one offset per prompt to every R_k: increments, r_agg and in-group ranks stay as they were."""
    run = write_run(tmp_path / "run", records=_random_records(3))
    effects = counterfactual_study(load_records(run), [parse_noise_spec("bias:0.3")], repeats=2)
    for e in effects:
        assert e.increment_sign_change.mean == 0
        assert e.advantage_spearman.mean == pytest.approx(1.0, abs=1e-3)
        assert e.advantage_sign_agreement.mean > 0.99
        if e.tp_precision is not None:
            assert (e.tp_precision.mean, e.tp_recall.mean) == (1.0, 1.0)
    mixed = counterfactual_study(load_records(run), [parse_noise_spec("gaussian:0.3")], algos=["tp_grpo"], repeats=1)
    assert mixed[0].tp_recall.mean < 0.9  # a per-score noise of the same size does change them


def test_sweep_directories_list_their_runs(tmp_path) -> None:
    from creditzoo.analysis.runs import expand_run_dirs

    sweep = write_sweep(tmp_path / "sweep", {f"r{i}": dict(seed=i, records=[]) for i in range(3)})
    manifest = json.loads((sweep / "manifest.json").read_text())
    manifest["runs"][1]["status"] = "pending"
    manifest["runs"][2]["status"] = "failed"
    (sweep / "manifest.json").write_text(json.dumps(manifest))
    assert [p.name for p in expand_run_dirs([sweep])] == ["r0"]
    (sweep / "manifest.json").unlink()  # a plain directory of run directories
    assert [p.name for p in expand_run_dirs([sweep / "runs"])] == ["r0", "r1", "r2"]
    (sweep / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a sweep manifest"):
        expand_run_dirs([sweep])


def test_noise_sweep_keeps_other_options_apart(tmp_path) -> None:
    from creditzoo.analysis.robustness import noise_sweep_scores

    runs = []
    for completion, base in (("ode", 0.8), ("x0", 0.6)):
        for noise, drop in ((None, 0.0), ("gaussian:0.1", 0.1)):
            for seed in range(2):
                path = tmp_path / f"{completion}-{noise}-{seed}"
                score = base - drop + 0.01 * seed
                write_run(
                    path,
                    seed=seed,
                    completion=completion,
                    reward_noise=noise,
                    records=[],
                    test_scores={0: 0.5, 2: score},
                )
                runs.append(load_run(path))
    cells = {(s.algo, s.level): s for s in noise_sweep_scores(runs)}
    assert set(cells) == {(f"tp_grpo_strict completion={c}", level) for c in ("ode", "x0") for level in (0.0, 0.1)}
    assert cells[("tp_grpo_strict completion=x0", 0.1)].score.mean == pytest.approx(0.505)
    assert cells[("tp_grpo_strict completion=ode", 0.0)].seeds == 2


def test_noise_sweep_intervals_are_students_t_over_seeds(tmp_path) -> None:
    from scipy import stats

    from creditzoo.analysis.robustness import noise_sweep_scores

    finals = {None: [0.70, 0.72, 0.69], "gaussian:0.1": [0.90, 0.99, 0.60]}  # the noisy t interval runs past 1
    runs = []
    for noise, values in finals.items():
        for seed, final in enumerate(values):
            path = tmp_path / f"{noise}-{seed}"
            write_run(path, seed=seed, reward_noise=noise, records=[], test_scores={0: 0.5, 2: final})
            runs.append(load_run(path))
    cells = {s.level: s.score for s in noise_sweep_scores(runs)}
    clean = finals[None]
    low, high = stats.t.interval(0.95, 2, loc=np.mean(clean), scale=stats.sem(clean))
    assert (cells[0.0].low, cells[0.0].high) == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))
    assert cells[0.0].low < min(clean) and cells[0.0].high > max(clean)  # wider than the seed range a bootstrap gives
    assert cells[0.0].values == pytest.approx(clean)
    noisy = finals["gaussian:0.1"]
    low, high = stats.t.interval(0.95, 2, loc=np.mean(noisy), scale=stats.sem(noisy))
    assert high > 1 and cells[0.1].high == 1.0  # the partial score's range, [0, 1]
    assert cells[0.1].low == pytest.approx(low, abs=1e-6)
