"""Builds the embedded default model: a tiny Qwen2.5-VL made offline, with no download.

The tokenizer is a byte-level BPE trained here on IQA-style text, with every digit its own token (as in
Qwen2's tokenizer); ``<think>``/``<answer>`` tags are
ordinary (non-special) added tokens, because TRL decodes completions with ``skip_special_tokens=True`` and
special tags would vanish before the reward parser sees them. The chat template is Qwen2-VL's. The folder
is written with ``save_pretrained`` and read back through the ordinary ``from_pretrained`` path, so tests
exercise the same code a real Qwen2.5-VL folder goes through.

Variants: ``tiny`` (about 0.75M parameters, 3 MB) for tests and CI, ``small`` (about 4M) for the demo.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from qhawkeye import prompts, settings
from qhawkeye.atomic import atomic_dir, ensure_built

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

# Qwen2-VL's chat template (the one shipped with Qwen2-VL / Qwen2.5-VL Instruct).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Sizes of a tiny Qwen2.5-VL (text decoder and vision tower)."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    mrope_section: tuple[int, int, int]  # must sum to head_dim / 2
    vision_hidden: int
    vision_depth: int
    vision_heads: int
    vision_intermediate: int
    vocab_size: int = 1024


VARIANTS = {
    "tiny": TinySpec(128, 2, 4, 2, 256, (4, 6, 6), 64, 2, 4, 128),
    "small": TinySpec(256, 4, 4, 2, 512, (8, 12, 12), 128, 4, 4, 256),
}

_WORDS = (
    "the image is sharp blurry noisy clear dark bright overexposed underexposed colour colours faded vivid "
    "details texture edges compression artefacts blocking ringing grain smooth soft focus motion blur low "
    "high quality good bad poor fair excellent acceptable visible slight strong severe mild content subject "
    "background foreground lighting contrast saturation natural photo picture overall rating score judge "
    "analysis first then answer between and with without some many few very quite rather not"
).split()


def _corpus(seed: int = 0, n: int = 6000) -> list[str]:
    rng = random.Random(seed)
    lines = [prompts.SYSTEM_PROMPT, prompts.QUESTION]
    for _ in range(n):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14)))
        score = f"{rng.uniform(1, 5):.{rng.choice([0, 1, 2])}f}"
        lines.append(f"<think>{words.capitalize()}.</think><answer>{score}</answer>")
    return lines


def build_tokenizer(vocab_size: int = 1024, seed: int = 0):
    """A byte-level BPE tokenizer with Qwen2-VL's special tokens and chat template, trained offline."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    # digits are single tokens, as in Qwen2's tokenizer: a score's first digit is one token whose probability
    # the expected-score mode reads, and "3.75" never merges into one opaque token
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TAG_TOKENS),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_corpus(seed), trainer=trainer)
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )


def build_processor(tokenizer, max_pixels: int = 224 * 224):
    """Image-only Qwen2.5-VL processor around a PIL image processor (no torchvision needed)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from qhawkeye.modeling import ImageOnlyQwen2_5_VLProcessor

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=3136, max_pixels=max_pixels, patch_size=14, temporal_patch_size=2, merge_size=2
    )
    return ImageOnlyQwen2_5_VLProcessor(image_processor, tokenizer, chat_template=CHAT_TEMPLATE)


def build_model(tokenizer, spec: TinySpec, seed: int = 0):
    """A randomly initialised Qwen2_5_VLForConditionalGeneration of the given sizes."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": spec.vocab_size,
            "hidden_size": spec.text_hidden,
            "intermediate_size": spec.text_intermediate,
            "num_hidden_layers": spec.text_layers,
            "num_attention_heads": spec.text_heads,
            "num_key_value_heads": spec.text_kv_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": list(spec.mrope_section),
            },
            "tie_word_embeddings": False,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": spec.vision_depth,
            "hidden_size": spec.vision_hidden,
            "intermediate_size": spec.vision_intermediate,
            "num_heads": spec.vision_heads,
            "out_hidden_size": spec.text_hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [spec.vision_depth - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad_token_id=ids["<|endoftext|>"]
    )
    return model


def build_tiny_model(out_dir: str | Path, variant: str = "tiny", seed: int = 0) -> Path:
    """Build a tiny randomly initialised Qwen2.5-VL and save it to ``out_dir`` atomically (written beside, then
    renamed). Building only: the format warm-started variants are trained by
    :func:`qhawkeye.train.warmstart.ensure_format_model`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown tiny-model variant {variant!r}; choose from {sorted(VARIANTS)}")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; remove it or choose another folder")
    spec = VARIANTS[variant]
    tokenizer = build_tokenizer(spec.vocab_size, seed)
    processor = build_processor(tokenizer)
    model = build_model(tokenizer, spec, seed)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    logger.info("built %s Qwen2.5-VL (%d parameters) at %s", variant, model.num_parameters(), out_dir)
    return out_dir


def ensure_tiny_model(variant: str = "tiny") -> Path:
    """The embedded default's folder, built on first use (under ``settings.home()``)."""
    return ensure_built(settings.tiny_model_dir(variant), lambda folder: build_tiny_model(folder, variant))
