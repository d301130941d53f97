"""Evaluation: seeded ODE sampling of the test prompts, per-category scores, the grid, the CLI."""

import dataclasses
import json

import pytest
import torch
from tiny_model import TRAIN_ARGS
from typer.testing import CliRunner

from creditzoo.learner.evaluate import (
    EvalConfig,
    NoiseTable,
    evaluate,
    evaluation_samples,
    record_json,
    sample_ode,
    save_grid,
)
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


def test_noise_table_seed_is_the_documented_blake2b_hash() -> None:
    import hashlib

    key = json.dumps([7, "geneval", "a red circle", 3]).encode()
    expected = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1
    table = NoiseTable("geneval", 7)
    assert table.sample_seed("a red circle", 3) == expected < 2**63
    row = torch.randn((3, 4, 4), generator=torch.Generator().manual_seed(expected))
    assert torch.equal(table.noise((3, 4, 4), ["a red circle"], [3])[0], row)
    assert table.name == "blake2b:geneval:7"


def test_noise_table_rows_do_not_depend_on_the_other_rows_or_their_order() -> None:
    table = NoiseTable("geneval", 0)
    prompts, indices = ["a", "b", "a", "c"], [0, 0, 1, 5]
    whole = table.noise((3, 4, 4), prompts, indices)
    backwards = table.noise((3, 4, 4), prompts[::-1], indices[::-1])
    assert torch.equal(whole, backwards.flip(0))
    for i in range(4):
        assert torch.equal(whole[i], table.noise((3, 4, 4), [prompts[i]], [indices[i]])[0])
    assert not torch.equal(whole[0], whole[2])  # sample 1 of "a" is not sample 0 of "a"


def test_noise_tables_of_other_tasks_or_seeds_differ() -> None:
    rows = [
        NoiseTable(task, seed).noise((3, 4, 4), ["a circle"], [0])[0]
        for task, seed in [("geneval", 0), ("ocr", 0), ("geneval", 1)]
    ]
    assert not torch.equal(rows[0], rows[1]) and not torch.equal(rows[0], rows[2]) and not torch.equal(rows[1], rows[2])


class _Still(ToyFlowModel):
    """Zero velocity: the ODE keeps the noise, so an image is (noise + 1) / 2 clamped, exactly."""

    def velocity(self, latents, sigma, cond, *, guidance_scale=1.0):
        return torch.zeros_like(latents)


def _by_sample(result) -> dict[tuple[int, int], torch.Tensor]:
    return {(s.prompt_index, s.sample_index): result.images[i] for i, s in enumerate(result.samples)}


@pytest.mark.slow
def test_evaluation_noise_is_fixed_per_prompt_and_sample_index(task) -> None:
    """Common random numbers: the same (prompt, sample) starts from the same noise in every evaluation."""
    still = _Still(TINY).eval()
    small = evaluate(still, task, EvalConfig(num_steps=1, samples_per_prompt=1, min_images_per_category=0))
    large = evaluate(
        still, task, EvalConfig(num_steps=1, samples_per_prompt=3, min_images_per_category=32, batch_size=7)
    )
    a, b = _by_sample(small), _by_sample(large)
    assert len(a) == len(task.test_prompts()) and set(a) < set(b)
    for key, image in a.items():
        assert torch.equal(image, b[key])
    expected = (NoiseTable("geneval", 0).noise((3, 32, 32), [task.test_prompts()[5]], [2])[0] + 1) / 2
    torch.testing.assert_close(b[(5, 2)], expected.clamp(0, 1), rtol=0, atol=1e-6)  # decode: one affine map
    assert small.noise_table == "blake2b:geneval:0"
    other = evaluate(still, task, EvalConfig(num_steps=1, samples_per_prompt=1, min_images_per_category=0, seed=1))
    assert not torch.equal(small.images, other.images)


def test_evaluation_samples_index_the_split(task) -> None:
    samples = evaluation_samples(task, EvalConfig(samples_per_prompt=2, min_images_per_category=4))
    split = task.test_prompts()
    assert all(split[s.prompt_index] == s.prompt and s.category == task.category(s.prompt) for s in samples)
    single = [s.sample_index for s in samples if s.category == "single_object"]  # one prompt in its category
    assert single == [0, 1, 2, 3]


def test_per_image_records_reproduce_the_summary(model: ToyFlowModel, task) -> None:
    config = EvalConfig(num_steps=2, samples_per_prompt=2, min_images_per_category=8)
    result = evaluate(model, task, config)
    protocol = config.protocol("final", task.name)
    record = json.loads(record_json(result.to_record(protocol, task.name, iteration=3, adapter="checkpoints/x")))
    assert set(record) == {"protocol", "task", "iteration", "adapter", "metrics", "summary", "images"}
    assert record["protocol"] == {
        "name": "final", "num_steps": 2, "samples_per_prompt": 2, "min_images_per_category": 8,
        "guidance_scale": 1.0, "shift": 1.0, "split": "test", "noise_table": "blake2b:geneval:0", "sampler": "ode",
    }  # fmt: skip
    assert record["metrics"] == ["partial_score", "strict_accuracy", "extra_objects"]
    images = record["images"]
    assert len(images) == len(result.prompts)
    assert set(images[0]) == {"prompt_index", "prompt", "category", "sample_index", *record["metrics"]}
    # recompute the summary from the records alone: per-category means, then their mean (GenEval's overall);
    # float32 tensor means against float64 sums of <= 400 values in [0, 1]: they agree to well within 1e-5
    for metric, key in [("partial_score", "partial_score"), ("strict_accuracy", "strict_accuracy"),
                        ("extra_objects", "extra_object_rate")]:  # fmt: skip
        per_category: dict[str, list[float]] = {}
        for image in images:
            per_category.setdefault(image["category"], []).append(image[metric])
        means = {name: sum(v) / len(v) for name, v in per_category.items()}
        for name, mean in means.items():
            assert record["summary"]["per_category"][name][key] == pytest.approx(mean, abs=1e-5)
        assert record["summary"][key] == pytest.approx(sum(means.values()) / len(means), abs=1e-5)


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
    assert result.summary["strict_accuracy"] == pytest.approx(sum(means) / len(means))
    assert 0 <= result.summary["strict_accuracy"] <= result.summary["partial_score"] + 1e-6 <= 1 + 1e-6
    summary = json.loads(result.to_json())
    assert set(summary) == {"strict_accuracy", "partial_score", "extra_object_rate", "per_category"}
    assert set(summary["per_category"]["counting"]) == {"strict_accuracy", "partial_score", "extra_object_rate"}


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
