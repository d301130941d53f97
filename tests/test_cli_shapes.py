"""`creditzoo train` and `analyze` on anchor-branch and tree runs: records carry the shape, replays respect it."""

import pytest
import torch
from lanes import first_fast
from tiny_model import TRAIN_ARGS
from typer.testing import CliRunner

from creditzoo.analysis import load_records, recompute
from creditzoo.cli import app

runner = CliRunner()
# T = 3, K = 2: the default tree splits at window step 0 only, so 2 leaves = the group size.
TINY = [*TRAIN_ARGS, *["--eval-every", "2", "--eval-samples-per-prompt", "1"]]


pytestmark = pytest.mark.usefixtures("tiny_task")


@pytest.mark.parametrize(
    ("algo", "shape", "other"),
    first_fast([("branch_grpo", "tree", "g2rpo"), ("tempflow", "anchor", "tp_grpo")], several=True),
)
def test_branched_runs_record_their_shape_and_replay(tmp_path, algo: str, shape: str, other: str) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", *TINY, "--algo", algo, "--iterations", "2", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    records = load_records(run)
    assert [r.shape for r in records] == [shape, shape]
    for record, credit in zip(records, recompute(records, algo), strict=True):
        torch.testing.assert_close(credit.advantages, record.tensors["advantages"])
    from creditzoo.analysis.robustness import counterfactual_study, parse_noise_list

    clean, noisy = counterfactual_study(records, parse_noise_list(["none", "gaussian:0.5"]), algos=[algo], repeats=2)
    assert clean.advantage_sign_agreement.mean == 1 and clean.advantage_spearman.mean == pytest.approx(1)
    assert clean.increment_sign_change is None  # no increments d_k outside chains
    assert noisy.advantage_sign_agreement.mean < 1  # the noise reaches the shape's own scores
    assert runner.invoke(app, ["analyze", "robustness", str(run), "--algo", algo, "--repeats", "1"]).exit_code == 0
    refused = runner.invoke(app, ["analyze", "robustness", str(run), "--algo", other])
    assert refused.exit_code == 2
    assert f"rollout, got a{'n' if shape == 'anchor' else ''} {shape} rollout" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and "Traceback" not in refused.output
