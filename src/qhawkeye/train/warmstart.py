"""A format-only supervised warm start for the tiny demo/test model (not part of the Q-Hawkeye method).

An untrained tiny model never writes ``<think>..</think><answer>..</answer>``, so every reward is 0 and GRPO
has nothing to learn from. This teaches the *format* only: the target's analysis is a few random words and
its score is drawn uniformly from [1, 5], independently of the image, so any correlation with quality that
a later GRPO run shows was learned from the reward, not from this step. Demo and tests only.
"""

from __future__ import annotations

import logging
import random

import torch

from qhawkeye import SCORE_MAX, SCORE_MIN, prompts

logger = logging.getLogger(__name__)

_WORDS = "sharp blurry noisy clean dark bright soft clear faded vivid grainy smooth detailed flat".split()


def random_target(rng: random.Random) -> str:
    """``<think>the image looks w1 and w2.</think><answer>x.xx</answer>`` with x drawn uniformly, image-blind."""
    words = " and ".join(rng.sample(_WORDS, 2))
    return f"<think>the image looks {words}.</think><answer>{rng.uniform(SCORE_MIN, SCORE_MAX):.2f}</answer>"


def _example(processor, image, target: str):
    """Input ids, pixel inputs and labels (-100 outside the answer) for one image and target."""
    messages = prompts.build_messages(with_image=True)
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = processor(text=[prompt + target + "<|im_end|>"], images=[image], return_tensors="pt")
    n_prompt = processor(text=[prompt], images=[image], return_tensors="pt")["input_ids"].size(1)
    labels = batch["input_ids"].clone()
    labels[:, :n_prompt] = -100
    return batch, labels


def format_warm_start(
    model, processor, images: list, steps: int = 60, batch_size: int = 8, lr: float = 3e-3, seed: int = 0
) -> list[float]:
    """Fine-tune ``model`` in place on image-blind format targets; returns the per-step mean losses."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        total = 0.0
        for image in rng.choices(images, k=batch_size):
            batch, labels = _example(processor, image, random_target(rng))
            loss = model(**batch, labels=labels).loss / batch_size
            loss.backward()
            total += loss.item()
        optimizer.step()
        losses.append(total)
    model.eval()
    logger.info("format warm start: loss %.3f -> %.3f over %d steps", losses[0], losses[-1], steps)
    return losses
