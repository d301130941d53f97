import threading

import pytest
import torch

from creditzoo.rewards.noise import NoisyReward, parse_noise_spec
from creditzoo.rewards.overlap import score_chunks, score_in_chunks

WAIT = 5.0  # seconds; only reached when the code under test fails to overlap


def test_scoring_runs_while_the_next_chunk_is_produced():
    """Chunk i's scoring waits until chunk i+1 is being produced: that only returns True if they overlap."""
    chunks = 4
    producing = [threading.Event() for _ in range(chunks + 1)]
    scoring = [threading.Event() for _ in range(chunks)]
    overlapped = {}

    def produce():
        for i in range(chunks):
            producing[i].set()
            if i > 0:  # the previous chunk must have reached the scorer before this one is finished
                assert scoring[i - 1].wait(WAIT), f"chunk {i - 1} was not being scored while chunk {i} decoded"
            yield torch.full((2, 3, 4, 4), float(i)), [f"p{i}"] * 2
        producing[chunks].set()

    def score(images, prompts):
        i = int(images[0, 0, 0, 0])
        scoring[i].set()
        overlapped[i] = producing[i + 1].wait(WAIT)  # the next chunk started while this one is scored
        return torch.full((images.shape[0],), 10.0 * i)

    results = score_chunks(produce(), score)
    assert [r.tolist() for r in results] == [[0.0, 0.0], [10.0, 10.0], [20.0, 20.0], [30.0, 30.0]]
    assert all(overlapped[i] for i in range(chunks))


def test_results_come_back_in_chunk_order_when_workers_finish_out_of_order():
    release = threading.Event()

    def score(images, prompts):
        if prompts[0] == "first":
            release.wait(WAIT)  # the first chunk finishes last
        else:
            release.set()
        return prompts[0]

    chunks = [(torch.zeros(1, 3, 2, 2), [name]) for name in ("first", "second", "third")]
    assert score_chunks(iter(chunks), score, workers=3) == ["first", "second", "third"]
    assert release.is_set()


def test_one_worker_keeps_a_stateful_reward_identical_to_a_sequential_loop():
    images = torch.rand(10, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    prompts = [f"p{i % 3}" for i in range(10)]

    def mean(x, p):
        return x.mean(dim=(1, 2, 3))

    sequential = NoisyReward(mean, parse_noise_spec("gaussian:0.1"), seed=3)
    expected = torch.cat([sequential(images[i : i + 3], prompts[i : i + 3]) for i in range(0, 10, 3)])
    overlapped = NoisyReward(mean, parse_noise_spec("gaussian:0.1"), seed=3)
    got = torch.cat(score_in_chunks(lambda part: images[part], 10, prompts, overlapped, chunk_size=3))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_score_in_chunks_decodes_each_item_once_in_order():
    decoded = []

    def decode(part):
        decoded.append((part.start, part.stop))
        return torch.arange(part.start, part.stop, dtype=torch.float32)[:, None, None, None].expand(-1, 3, 2, 2)

    prompts = [str(i) for i in range(7)]
    parts = score_in_chunks(decode, 7, prompts, lambda x, p: x[:, 0, 0, 0], chunk_size=3)
    assert decoded == [(0, 3), (3, 6), (6, 7)]
    assert torch.cat(parts).tolist() == list(range(7))
    whole = score_in_chunks(decode, 7, prompts, lambda x, p: x[:, 0, 0, 0], chunk_size=None)
    assert len(whole) == 1


def test_errors_propagate_from_the_scorer_and_from_the_producer():
    def bad_score(images, prompts):
        raise RuntimeError("reward broke")

    with pytest.raises(RuntimeError, match="reward broke"):
        score_chunks(iter([(torch.zeros(1, 3, 2, 2), ["a"])] * 3), bad_score)

    def bad_producer():
        yield torch.zeros(1, 3, 2, 2), ["a"]
        raise RuntimeError("decode broke")

    with pytest.raises(RuntimeError, match="decode broke"):
        score_chunks(bad_producer(), lambda x, p: 0)


def test_bad_settings_fail():
    with pytest.raises(ValueError, match="workers"):
        score_chunks(iter([]), lambda x, p: 0, workers=0)
    with pytest.raises(ValueError, match="max_pending"):
        score_chunks(iter([]), lambda x, p: 0, max_pending=0)
    with pytest.raises(ValueError, match="chunk_size"):
        score_in_chunks(lambda s: torch.zeros(1), 1, ["a"], lambda x, p: 0, chunk_size=0)
    with pytest.raises(ValueError, match="prompts"):
        score_in_chunks(lambda s: torch.zeros(1), 2, ["a"], lambda x, p: 0, chunk_size=1)
