"""Evaluation: seeded ODE sampling of the test prompts, per-category scores, the grid, the CLI."""

import dataclasses
import json

import pytest
import torch
from tiny_model import TRAIN_ARGS
from typer.testing import CliRunner

from creditzoo.learner.evaluate import EvalConfig, evaluate, sample_ode, save_grid, seeded_noise
from creditzoo.models.toy import DEFAULT_WEIGHTS, LORA_TARGET_MODULES, ToyFlowModel, ToyModelConfig
from creditzoo.tasks import get_task
from creditzoo.tasks.geneval import CATEGORIES, VOCABULARY

TINY = ToyModelConfig(
    vocabulary=VOCABULARY, channels=(8, 16, 16), text_dim=16, text_layers=1, heads=2, emb_dim=16, groups=4
)
FAST = EvalConfig(num_steps=2, samples_per_prompt=1, min_images_per_category=0, guidance_scale=2.0)
needs_weights = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="shipped weights not built yet")


@pytest.fixture(scope="module")
def model() -> ToyFlowModel:
    torch.manual_seed(0)
    tiny = ToyFlowModel(TINY).eval()
    with torch.no_grad():
        for param in tiny.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return tiny


@pytest.fixture(scope="module")
def task():
    return get_task("geneval")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="num_steps"):
        EvalConfig(num_steps=0)
    with pytest.raises(ValueError, match="split"):
        EvalConfig(split="val")
    assert EvalConfig().num_steps == 40


def test_seeded_noise_is_per_sample() -> None:
    whole = seeded_noise((3, 4, 4), 7, range(0, 5))
    part = seeded_noise((3, 4, 4), 7, range(2, 4))
    torch.testing.assert_close(whole[2:4], part, rtol=0, atol=0)
    assert not torch.equal(whole[0], whole[1])


def test_sample_ode_zero_velocity_returns_noise_image() -> None:
    class Still(ToyFlowModel):
        def velocity(self, latents, sigma, cond, *, guidance_scale=1.0):
            return torch.zeros_like(latents)

    still = Still(TINY)
    noise = torch.rand(2, 3, 32, 32) * 2 - 1
    images = sample_ode(still, ["a circle", "a square"], noise, num_steps=3)
    torch.testing.assert_close(images, (noise + 1) / 2)


def test_evaluate_smoke(model: ToyFlowModel, task) -> None:
    result = evaluate(model, task, FAST)
    n = len(task.test_prompts())
    assert result.images.shape == (n, 3, 32, 32) and len(result.prompts) == n
    assert set(result.per_category) == set(CATEGORIES)
    assert sum(row["count"] for row in result.per_category.values()) == n
    means = [row["strict_accuracy"] for row in result.per_category.values()]
    assert result.strict_accuracy == pytest.approx(sum(means) / len(means))
    assert 0 <= result.strict_accuracy <= result.partial_score + 1e-6 <= 1 + 1e-6
    summary = json.loads(result.to_json())
    assert set(summary) == {"strict_accuracy", "partial_score", "extra_object_rate", "per_category"}
    assert set(summary["per_category"]["counting"]) == {"strict_accuracy", "partial_score", "extra_object_rate"}


def test_evaluate_is_seeded_and_batch_size_free(model: ToyFlowModel, task) -> None:
    config = EvalConfig(num_steps=2, samples_per_prompt=1, min_images_per_category=0, batch_size=64)
    first = evaluate(model, task, config)
    second = evaluate(model, task, dataclasses.replace(config, batch_size=25))
    torch.testing.assert_close(first.images, second.images, atol=1e-5, rtol=1e-5)
    other = evaluate(model, task, dataclasses.replace(config, seed=1))
    assert not torch.allclose(first.images, other.images)


def test_min_images_per_category(task) -> None:
    from collections import Counter

    from creditzoo.learner.evaluate import evaluation_prompts

    prompts = evaluation_prompts(task, EvalConfig(samples_per_prompt=2, min_images_per_category=12))
    per_category = Counter(task.category(p) for p in prompts)
    assert min(per_category.values()) >= 12
    assert Counter(prompts)[task.test_prompts()[-1]] == 2  # the big color_attr category keeps 2 per prompt
    assert prompts == sorted(prompts, key=prompts.index)  # prompt-major: all samples of a prompt adjacent


def test_save_grid(tmp_path) -> None:
    from PIL import Image

    path = save_grid(
        torch.rand(5, 3, 32, 32),
        ["a circle"] * 5,
        tmp_path / "g" / "grid.png",
        columns=4,
        marks=torch.tensor([True, False, True, True, False]),
    )
    with Image.open(path) as image:
        assert image.size[0] == 4 * (96 + 4) + 4
    with pytest.raises(ValueError):
        save_grid(torch.rand(2, 3, 32, 32), ["one"], tmp_path / "bad.png")


def _app():
    from creditzoo.cli import evaluate as _evaluate  # noqa: F401
    from creditzoo.cli.app import app

    return app


def test_cli_rejects_bad_input(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(_app(), ["eval", "--env", "nope"])
    assert result.exit_code == 2 and "unknown env" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(_app(), ["eval", "--lora", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "adapter" in result.output
    result = runner.invoke(_app(), ["pretrain", "--env", "nope"])
    assert result.exit_code == 2 and "unknown env" in result.output


@needs_weights
def test_cli_eval_json_with_lora(tmp_path) -> None:
    from peft import LoraConfig, get_peft_model

    from creditzoo.models.toy import load_geneval_model

    adapter = get_peft_model(load_geneval_model(), LoraConfig(r=2, target_modules=LORA_TARGET_MODULES))
    adapter.save_pretrained(str(tmp_path / "lora"))
    args = ["eval", "--json", "--steps", "2", "--samples-per-prompt", "1", "--min-images-per-category", "0"]
    args += ["--out", str(tmp_path / "grid.png")]
    runner = CliRunner()
    plain = runner.invoke(_app(), args)
    assert plain.exit_code == 0, plain.output
    with_lora = runner.invoke(_app(), [*args, "--lora", str(tmp_path / "lora")])
    assert with_lora.exit_code == 0, with_lora.output
    summary = json.loads(with_lora.stdout.strip().splitlines()[-1])
    assert set(summary) == {"strict_accuracy", "partial_score", "extra_object_rate", "per_category"}
    assert set(summary["per_category"]) == set(CATEGORIES)
    assert summary == json.loads(plain.stdout.strip().splitlines()[-1])  # a fresh LoRA is a no-op
    assert (tmp_path / "grid.png").is_file()
    table = runner.invoke(_app(), [arg for arg in args if arg != "--json"])
    assert table.exit_code == 0 and "counting" in table.stdout


@pytest.mark.usefixtures("tiny_task")
def test_cli_eval_of_a_run_uses_its_settings_and_newest_adapter(tmp_path) -> None:
    """``eval --run`` = ``eval --env E --lora <newest checkpoint> --shift S`` with the run's task, model and shift."""
    from creditzoo.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    train = ["train", *TRAIN_ARGS, "--lr", "0.05", "--eval-every", "0", "--shift", "2", "--iterations", "2"]
    result = runner.invoke(app, [*train, "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    common = ["eval", "--json", "--steps", "3", "--samples-per-prompt", "1", "--min-images-per-category", "0"]
    common += ["--out", str(tmp_path / "grid.png")]

    def scores(*args: str) -> dict:
        outcome = runner.invoke(app, [*common, *args])
        assert outcome.exit_code == 0, outcome.output
        return json.loads(outcome.stdout.strip().splitlines()[-1])

    from_run = scores("--run", str(run))
    explicit = scores("--env", "tiny", "--lora", str(run / "checkpoints" / "iter_000002"), "--shift", "2")
    assert from_run == explicit
    assert scores("--env", "tiny", "--shift", "2") != from_run  # the base model: the adapter is loaded
    assert scores("--env", "tiny", "--lora", str(run / "checkpoints" / "iter_000002")) != from_run  # shift 1 differs
    assert scores("--run", str(run), "--shift", "1") != from_run  # an option given wins over the run's


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "{tmp}/nothing"], "does not exist"),
        (["--run", "{run}", "--env", "geneval"], "does not match the run's env"),
        (["--run", "{run}"], "holds no checkpoint yet"),
        (["--dtype", "float8"], "unknown dtype 'float8'; valid: float32, bfloat16, float16"),
        (["--model", "sd3"], "needs a path"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
@pytest.mark.usefixtures("tiny_task")
def test_cli_eval_rejects_bad_model_and_run_options(tmp_path, args: list[str], message: str) -> None:
    from creditzoo.cli import app

    run = tmp_path / "run"
    run.mkdir()
    # a run that has not checkpointed yet
    (run / "config.json").write_text(json.dumps({"env": "tiny", "prompts_per_iteration": 2}))
    args = [arg.format(tmp=tmp_path, run=run) for arg in args]
    result = CliRunner().invoke(app, ["eval", "--env", "tiny", *args] if "--run" not in args else ["eval", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
