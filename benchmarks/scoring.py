"""Images per second of the batched Scorer against one-image-at-a-time generation (the release's way).

    python benchmarks/scoring.py [--model tiny-format] [--images 48] [--batch 16] [--tokens 64] [--rounds 3]

Both arms use the same model, the same images, the same prompt, greedy decoding and the same token limit.
The baseline does what the authors' inference script does for every image: build the chat text, run the
processor on one image, ``model.generate`` for that image alone. The Scorer puts ``--batch`` images in one
``generate`` call (left padding). Arms run interleaved for ``--rounds`` rounds; medians are reported with the
ratio, and the answers of the two arms are compared (greedy decoding: they should agree image by image).
Images: the LIVE-Wild subset in ../shared/data/livec when present (500x500 photos), else random images.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
LIVEC = Path(__file__).resolve().parents[2] / "shared" / "data" / "livec" / "images"


def load_images(n: int) -> tuple[list[Image.Image], str]:
    if LIVEC.is_dir():
        files = sorted(LIVEC.iterdir())[:n]
        return [Image.open(f).convert("RGB") for f in files], f"{len(files)} LIVE-Wild photos"
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((384, 512, 3)) * 255).astype("uint8")) for _ in range(n)]
    return images, f"{n} random 512x384 images"


def one_at_a_time(scorer, images) -> list[str]:
    """The release's inference loop: one processor call and one generate call per image."""
    prompt = scorer.processor.apply_chat_template(
        scorer.preset.messages(), add_generation_prompt=True, tokenize=False
    )
    texts = []
    with torch.inference_mode():
        for image in images:
            inputs = scorer.processor(text=[prompt], images=[image], return_tensors="pt").to(scorer.device)
            out = scorer.model.generate(**inputs, generation_config=scorer.generation_config)
            new = out[0, inputs["input_ids"].size(1) :]
            texts.append(scorer.processor.tokenizer.decode(new, skip_special_tokens=True))
    return texts


def batched(scorer, images) -> list[str]:
    return [r.text for r in scorer.score_batch(images, ids=[str(n) for n in range(len(images))])]


def main() -> None:
    from qhawkeye import allocator

    allocator.tune()  # as the qhawkeye command does
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-format")  # built below when missing
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    from qhawkeye.scoring import create_scorer
    from qhawkeye.train.warmstart import ensure_format_model

    if args.model.endswith("-format"):
        ensure_format_model(args.model.removesuffix("-format"))

    scorer = create_scorer(args.model, max_new_tokens=args.tokens, batch_size=args.batch, device=args.device,
                           dtype=args.dtype)  # fmt: skip
    images, what = load_images(args.images)
    arms = {"one image per generate call (release)": one_at_a_time, f"Scorer, batch {args.batch}": batched}
    times: dict[str, list[float]] = {name: [] for name in arms}
    answers: dict[str, list[str]] = {}
    batched(scorer, images[: args.batch])  # warm-up
    for _ in range(args.rounds):
        for name, arm in arms.items():
            if scorer.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            answers[name] = arm(scorer, images)
            if scorer.device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times[next(iter(arms))])
    same = sum(a == b for a, b in zip(*answers.values(), strict=True))
    print(
        f"\n{what}, model {args.model}, greedy, max {args.tokens} new tokens, {args.rounds} interleaved rounds"
    )
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {scorer.device}\n")
    print("| arm | median s | images/s | ratio vs one-at-a-time |\n|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {len(images) / median:.1f} | **{base / median:.2f}x** |")
    print(f"\nanswers identical in both arms: {same} of {len(images)} images")


if __name__ == "__main__":
    sys.exit(main())
