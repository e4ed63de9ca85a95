"""A format-only supervised warm start for the tiny demo/test model (not part of the Q-Hawkeye method).

An untrained tiny model never writes ``<think>..</think><answer>..</answer>``, so every reward is 0 and GRPO
has nothing to learn from. This teaches the *format* only: the target's analysis is a few random words and
its score is drawn uniformly from [1, 5], independently of the image, so any correlation with quality that
a later GRPO run shows was learned from the reward, not from this step. Demo and tests only.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

from qhawkeye import SCORE_MAX, SCORE_MIN, prompts

logger = logging.getLogger(__name__)

_WORDS = "sharp blurry noisy clean dark bright soft clear faded vivid grainy smooth detailed flat".split()


FIXED_THINK = "I check the exposure, sharpness, noise and colours."
THINK_STYLES = ("fixed", "random")


def random_target(rng: random.Random, think: str = "random") -> str:
    """``<think>..</think><answer>x.xx</answer>`` with x drawn uniformly, image-blind.

    ``think="random"``: "the image looks w1 and w2." with two random words; ``"fixed"``: always
    :data:`FIXED_THINK`. A tiny model's analysis carries no information either way; random words make every
    GRPO rollout differ in tokens that have nothing to do with the score, and their advantage-weighted
    gradients are noise that drowns the score's signal and, at a learning rate that learns, breaks the format
    (benchmarks/RESULTS.md, learnability). The fixed sentence leaves the score as the only thing rollouts vary.
    """
    if think == "fixed":
        analysis = FIXED_THINK
    else:
        analysis = f"the image looks {' and '.join(rng.sample(_WORDS, 2))}."
    return f"<think>{analysis}</think><answer>{rng.uniform(SCORE_MIN, SCORE_MAX):.2f}</answer>"


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
    model,
    processor,
    images: list,
    steps: int = 60,
    batch_size: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    think: str = "random",
) -> list[float]:
    """Fine-tune ``model`` in place on image-blind format targets; returns the per-step mean losses."""
    if think not in THINK_STYLES:
        raise ValueError(f"think must be one of {THINK_STYLES}, got {think!r}")
    rng = random.Random(seed)
    losses = _fine_tune(model, processor, steps, seed, lr, lambda: [
        (image, random_target(rng, think)) for image in rng.choices(images, k=batch_size)
    ])  # fmt: skip
    logger.info("format warm start: loss %.3f -> %.3f over %d steps", losses[0], losses[-1], steps)
    return losses


def supervised_fine_tune(
    model,
    processor,
    images: list,
    labels: list[float],
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """The supervised reference: fine-tune on the *true* labels as answers (an upper reference for what the
    model can learn from these images; not the Q-Hawkeye method, which never sees a target answer)."""
    rng = random.Random(seed)
    pairs = list(zip(images, labels, strict=True))

    def batch():
        chosen = rng.choices(pairs, k=batch_size)
        return [(image, f"<think>{FIXED_THINK}</think><answer>{label:.2f}</answer>")
                for image, label in chosen]  # fmt: skip

    return _fine_tune(model, processor, steps, seed, lr, batch)


def _fine_tune(model, processor, steps: int, seed: int, lr: float, batch) -> list[float]:
    """AdamW on the answer tokens of ``batch()`` (a list of (image, target)) for ``steps`` steps."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        total = 0.0
        examples = batch()
        for image, target in examples:
            inputs, labels = _example(processor, image, target)
            loss = model(**inputs, labels=labels).loss / len(examples)
            loss.backward()
            total += loss.item()
        optimizer.step()
        losses.append(total)
    model.eval()
    return losses


def warm_start_folder(
    base: str | Path,
    images: list,
    out_dir: str | Path,
    steps: int = 150,
    batch_size: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    think: str = "fixed",
) -> Path:
    """Load ``base``, run :func:`format_warm_start` on ``images`` (the training images, unlabelled), save to
    ``out_dir`` atomically; an existing complete ``out_dir`` is reused.

    The targets never see a label, so the warm start may use the very images GRPO trains on: what it teaches
    is the answer's format and its end (``<|im_end|>``), on the pictures the policy will see.
    """
    from qhawkeye.atomic import atomic_dir, write_json_atomic
    from qhawkeye.modeling import load_model, load_processor

    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        return out_dir
    processor = load_processor(base)
    model = load_model(base, dtype="float32")
    losses = format_warm_start(model, processor, images, steps, batch_size, lr, seed, think)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        write_json_atomic(Path(tmp) / "warm_start.json", {
            "base": str(base), "images": len(images), "steps": steps, "batch_size": batch_size, "lr": lr,
            "seed": seed, "think": think, "loss_first": losses[0], "loss_last": losses[-1],
        })  # fmt: skip
    return out_dir


FORMAT_STEPS = 150
"""Steps of the embedded ``*-format`` models' warm start."""


def format_model_images(seed: int = 0) -> list:
    """What the embedded ``*-format`` models are warm-started on: 16 synthetic pictures and the bundled real
    photos (unlabelled), so the format holds on both kinds."""
    from qhawkeye import sample_data
    from qhawkeye.data.training_set import make_synthetic_pairs
    from qhawkeye.images import load_image

    return make_synthetic_pairs(16, seed=seed + 1)["image"] + [load_image(p) for p in sample_data.photos()]


def build_format_model(out_dir: str | Path, variant: str = "tiny", seed: int = 0) -> Path:
    """Train the embedded ``<variant>-format`` model into ``out_dir``: the tiny model ``variant`` after the
    image-blind format warm start (fixed analysis sentence, :data:`FORMAT_STEPS` steps). This is a training
    step, run explicitly (``qhawkeye build-tiny --format-warm-start``, the tests, the benchmarks), never by
    :func:`qhawkeye.modeling.resolve_model_path`."""
    from qhawkeye.tiny import ensure_tiny_model

    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; remove it or choose another folder")
    return warm_start_folder(ensure_tiny_model(variant), format_model_images(seed), out_dir, steps=FORMAT_STEPS,
                             seed=seed, think="fixed")  # fmt: skip


def ensure_format_model(variant: str = "tiny") -> Path:
    """The embedded ``<variant>-format`` folder under ``settings.home()``, trained on first call."""
    from qhawkeye import settings
    from qhawkeye.atomic import ensure_built

    return ensure_built(
        settings.tiny_model_dir(variant + "-format"), lambda folder: build_format_model(folder, variant)
    )
