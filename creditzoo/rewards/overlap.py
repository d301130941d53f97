"""Score one chunk of images while the next one decodes, so a slow reward does not leave the GPU idle.

At SD3.5 scale an episode ends with B x (K+1) latents to decode and score (hundreds of 1024 px images);
the environment decodes them in chunks (``DenoisingConfig.decode_batch``). A reward such as OCR or a
GenEval server takes seconds per chunk, mostly outside PyTorch (onnxruntime, HTTP), so running it in a
worker thread while the calling thread decodes the next chunk hides most of its cost. Flow-GRPO does the
same with a thread-pool executor around its reward function.

:func:`score_chunks` is that loop: the caller's iterable produces chunks (decoding happens as it advances);
each chunk is handed to a worker as soon as it exists; the results come back in chunk order. With one
worker (the default) chunks are scored one after another in submission order, so a reward with state (e.g.
a :class:`~creditzoo.rewards.noise.NoisyReward` drawing noise) draws exactly as in a plain sequential loop.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")


def score_chunks(
    chunks: Iterable[tuple[torch.Tensor, list[str]]],
    score: Callable[[torch.Tensor, list[str]], T],
    *,
    workers: int = 1,
    max_pending: int = 2,
) -> list[T]:
    """Apply ``score`` to each chunk in worker threads while ``chunks`` produces the next chunk.

    Args:
        chunks: yields ``(images [b, 3, H, W], prompts)`` lazily (e.g. a generator that decodes a chunk of
            latents per step); it is advanced in the calling thread.
        score: the reward (or any function of a chunk); called in a worker thread.
        workers: worker threads; 1 keeps the scoring order (and any reward state) sequential.
        max_pending: chunks scored or waiting to be scored while the next one is produced; bounds the decoded
            images held in memory to ``max_pending + 1`` chunks.

    Returns:
        ``score``'s result for each chunk, in chunk order.

    Raises:
        ValueError: if ``workers`` or ``max_pending`` is below 1.
        Exception: whatever producing a chunk or scoring one raised (chunks not yet started are cancelled).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if max_pending < 1:
        raise ValueError(f"max_pending must be >= 1, got {max_pending}")
    results: list[T] = []
    pending: collections.deque[Future[T]] = collections.deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="creditzoo-reward") as pool:
        try:
            for images, prompts in chunks:
                pending.append(pool.submit(score, images, prompts))
                while len(pending) > max_pending:
                    results.append(pending.popleft().result())
            while pending:
                results.append(pending.popleft().result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return results


def score_in_chunks(
    decode: Callable[[slice], torch.Tensor],
    count: int,
    prompts: list[str],
    score: Callable[[torch.Tensor, list[str]], T],
    *,
    chunk_size: int | None,
    workers: int = 1,
) -> list[T]:
    """Decode ``count`` items in chunks of ``chunk_size`` with ``decode`` and score each while the next decodes.

    Args:
        decode: returns the images [b, 3, H, W] of items ``slice(start, stop)``; called in the calling thread.
        count: N, items to decode.
        prompts: N prompts, one per item.
        score: the reward, called once per chunk with ``(images, prompts[start:stop])`` in a worker thread.
        chunk_size: items per chunk; None decodes all at once (and scoring then cannot overlap).
        workers: worker threads (see :func:`score_chunks`).

    Returns:
        ``score``'s result per chunk, in order (e.g. ``torch.cat`` them for scores [N]).
    """
    if len(prompts) != count:
        raise ValueError(f"got {count} items but {len(prompts)} prompts")
    size = count if chunk_size is None else chunk_size
    if size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")

    def produce() -> Iterable[tuple[torch.Tensor, list[str]]]:
        for start in range(0, count, max(size, 1)):
            part = slice(start, min(start + size, count))
            yield decode(part), prompts[part]

    return score_chunks(produce(), score, workers=workers)
