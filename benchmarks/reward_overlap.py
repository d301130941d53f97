"""How much of a slow reward's time `score_in_chunks` hides behind decoding; and the OCR reward's cost per image.

Renders N images of text (PIL) at SIZE px, stands in for the VAE decode with a sleep of DECODE_S per chunk
(a GPU decode releases the GIL the same way), scores with the real OCR reward (RapidOCR), and times
(a) decode-then-score per chunk in one thread and (b) `score_in_chunks` (score chunk i while chunk i+1
decodes). Both must give identical scores.

    python benchmarks/reward_overlap.py [N] [CHUNK] [DECODE_S] [SIZE]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from creditzoo.rewards.ocr import OcrReward, RapidOcrRecogniser
from creditzoo.rewards.overlap import score_in_chunks

WORDS = ["Open", "Hello World", "Coffee", "Night Market", "Sale", "Free Wifi", "Jazz", "Stop"]


def render(text: str, size: int) -> torch.Tensor:
    image = Image.new("RGB", (size, size), (230, 220, 200))
    font = ImageFont.load_default(size=size // 9)
    ImageDraw.Draw(image).text((size // 10, size // 2 - size // 16), text, fill=(20, 20, 20), font=font)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


def main() -> None:
    n, chunk, decode_s, size = (int(sys.argv[1]) if len(sys.argv) > 1 else 16), 4, 2.0, 512
    if len(sys.argv) > 2:
        chunk = int(sys.argv[2])
    if len(sys.argv) > 3:
        decode_s = float(sys.argv[3])
    if len(sys.argv) > 4:
        size = int(sys.argv[4])
    texts = [WORDS[i % len(WORDS)] for i in range(n)]
    images = torch.stack([render(t, size) for t in texts])  # [N, 3, size, size]
    prompts = [f'A sign that says "{t}"' for t in texts]
    reward = OcrReward(RapidOcrRecogniser())
    reward(images[:1], prompts[:1])  # load and warm up the sessions

    def decode(part: slice) -> torch.Tensor:
        time.sleep(decode_s)
        return images[part]

    start = time.perf_counter()
    sequential = [reward(decode(slice(s, min(s + chunk, n))), prompts[s : s + chunk]) for s in range(0, n, chunk)]
    sequential_s = time.perf_counter() - start
    start = time.perf_counter()
    overlapped = score_in_chunks(decode, n, prompts, reward, chunk_size=chunk)
    overlapped_s = time.perf_counter() - start
    assert torch.equal(torch.cat(sequential), torch.cat(overlapped))
    chunks = -(-n // chunk)
    score_s = sequential_s - chunks * decode_s
    print(f"N={n} images of {size}px, chunks of {chunk}, decode {decode_s:.1f} s/chunk (simulated)")
    mean = torch.cat(sequential).mean()
    print(f"OCR reward: {score_s / n:.2f} s/image ({score_s:.1f} s in all); mean reward {mean:.3f}")
    print(f"sequential decode+score: {sequential_s:.1f} s; score_in_chunks: {overlapped_s:.1f} s")
    print(f"lower bound max(decode, score) + one chunk of the other: {max(chunks * decode_s, score_s):.1f} s + ...")


if __name__ == "__main__":
    main()
