"""Random-weight models of a real checkpoint's shape, from its folder without weights.

``build_shaped_model(source, out)`` takes a model folder that holds a real checkpoint's configuration,
tokenizer, chat template, processor and generation settings but no weights (the repository vendors
Qwen2.5-VL-7B-Instruct's in ``vendor/qwen2_5_vl_7b_instruct``), and writes a folder that differs from the real
one only in its weights and sizes: the real vocabulary and special-token ids, the real tokenizer files, chat
template, ``preprocessor_config.json`` and ``generation_config.json`` (copied byte for byte), and a
randomly initialised model of the real architecture with the layer counts and widths of ``sizes``
(``sizes=None`` keeps the real ones: the 7B shape, for a GPU). Tests run the whole path on it offline; the
GPU check builds the full shapes in bf16.

What such a folder cannot show: anything that depends on trained weights (answers, scores, what the model
sees). What it does show: how tags and digits tokenize, the special ids, what TRL decodes, the pixel budget and
image-token counts, generation defaults, memory and speed of the real shapes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from qhawkeye.atomic import atomic_dir

COPIED = ("vocab.json", "merges.txt", "tokenizer_config.json", "tokenizer.json", "chat_template.json",
          "chat_template.jinja", "preprocessor_config.json", "video_preprocessor_config.json",
          "generation_config.json", "LICENSE", "README.md", "NOTICE.md")  # fmt: skip
"""Files copied unchanged from the source folder when present."""


@dataclass(frozen=True)
class ShapeSizes:
    """Reduced sizes (the vocabulary and every token id stay the real ones). ``head_dim`` = hidden / heads;
    Qwen2.5-VL's multimodal rotary sections must sum to head_dim / 2."""

    text_hidden: int = 32
    text_layers: int = 2
    text_heads: int = 2
    text_kv_heads: int = 1
    text_intermediate: int = 64
    mrope_section: tuple[int, int, int] = (2, 3, 3)
    vision_hidden: int = 32
    vision_depth: int = 2
    vision_heads: int = 2
    vision_intermediate: int = 64

    def __post_init__(self):
        head_dim, rem = divmod(self.text_hidden, self.text_heads)
        if rem or sum(self.mrope_section) * 2 != head_dim:
            raise ValueError(
                f"text_hidden / text_heads = {self.text_hidden / self.text_heads:g} must be an integer head_dim "
                f"equal to 2 x sum(mrope_section) = {2 * sum(self.mrope_section)}"
            )
        if self.text_heads % self.text_kv_heads or self.vision_hidden % self.vision_heads:
            raise ValueError("text_heads must be a multiple of text_kv_heads, vision_hidden of vision_heads")


def shaped_config(source: str | Path, sizes: ShapeSizes | None = None):
    """The source folder's configuration with the sizes of ``sizes`` (None: unchanged)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(source))
    if sizes is None:
        return config
    text = config.get_text_config()
    text.hidden_size, text.num_hidden_layers = sizes.text_hidden, sizes.text_layers
    text.num_attention_heads, text.num_key_value_heads = sizes.text_heads, sizes.text_kv_heads
    text.intermediate_size, text.max_window_layers = sizes.text_intermediate, sizes.text_layers
    text.head_dim = sizes.text_hidden // sizes.text_heads
    if getattr(text, "layer_types", None) is not None:
        text.layer_types = list(text.layer_types)[: sizes.text_layers]
    rope = dict(getattr(text, "rope_parameters", None) or {})
    if "mrope_section" in rope:
        rope["mrope_section"] = list(sizes.mrope_section)
        text.rope_parameters = rope
    vision = config.vision_config
    vision.depth, vision.hidden_size = sizes.vision_depth, sizes.vision_hidden
    vision.num_heads, vision.intermediate_size = sizes.vision_heads, sizes.vision_intermediate
    vision.out_hidden_size = sizes.text_hidden
    if hasattr(vision, "fullatt_block_indexes"):
        vision.fullatt_block_indexes = [sizes.vision_depth - 1]
    if hasattr(config, "hidden_size"):  # legacy top-level copies of the text sizes
        config.hidden_size = sizes.text_hidden
    return config


def build_shaped_model(
    source: str | Path,
    out: str | Path,
    sizes: ShapeSizes | None = ShapeSizes(),
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """Write a random-weight model of ``source``'s architecture (reduced to ``sizes``) to ``out`` atomically,
    with the source's tokenizer, template, processor and generation files copied unchanged."""
    import torch
    from transformers import AutoModelForImageTextToText

    source, out = Path(source), Path(out)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source}: no config.json; give a model folder (weights are not needed)")
    if out.exists():
        raise FileExistsError(f"{out} already exists; remove it or choose another folder")
    config = shaped_config(source, sizes)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=getattr(torch, dtype))
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        for name in COPIED:  # after save_pretrained: the real generation settings, not transformers' defaults
            if (source / name).is_file():
                shutil.copyfile(source / name, tmp / name)
        (tmp / "qhawkeye_shaped.json").write_text(
            json.dumps(
                {
                    "source": str(source),
                    "sizes": None if sizes is None else sizes.__dict__,
                    "seed": seed,
                    "note": "random weights: for plumbing, shapes and speed only",
                },
                indent=2,
            )
            + "\n"  # fmt: skip
        )
    return out


QWEN3_VL_4B = {
    "text": {"vocab_size": 151936, "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
             "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 262144,
             "rope_parameters": {"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                                 "mrope_interleaved": True}},
    "vision": {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "out_hidden_size": 2560,
               "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 2304,
               "deepstack_visual_indexes": [5, 11, 17]},
    "tie_word_embeddings": True,
}  # fmt: skip
"""Qwen3-VL-4B-Instruct's sizes as its published config.json gives them (written from the model card's
configuration; no Qwen3-VL folder was available here to check them against)."""


def qwen3_vl_config(tokenizer, sizes: ShapeSizes | None = ShapeSizes()):
    """A ``Qwen3VLConfig`` with ``tokenizer``'s special ids: the 4B sizes of :data:`QWEN3_VL_4B` for
    ``sizes=None``, else those sizes reduced to ``sizes``."""
    from transformers import Qwen3VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<|image_pad|>",
                                                           "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}  # fmt: skip
    text, vision = dict(QWEN3_VL_4B["text"]), dict(QWEN3_VL_4B["vision"])
    if sizes is not None:
        text.update(
            hidden_size=sizes.text_hidden,
            intermediate_size=sizes.text_intermediate,
            num_hidden_layers=sizes.text_layers,
            num_attention_heads=sizes.text_heads,
            num_key_value_heads=sizes.text_kv_heads,
            head_dim=sizes.text_hidden // sizes.text_heads,
            rope_parameters={**text["rope_parameters"], "mrope_section": list(sizes.mrope_section)},
        )
        vision.update(
            depth=sizes.vision_depth,
            hidden_size=sizes.vision_hidden,
            intermediate_size=sizes.vision_intermediate,
            num_heads=sizes.vision_heads,
            out_hidden_size=sizes.text_hidden,
            num_position_embeddings=144,
            deepstack_visual_indexes=[0],
        )
    text.update(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]
    )
    return Qwen3VLConfig(
        text_config=text, vision_config=vision,
        tie_word_embeddings=QWEN3_VL_4B["tie_word_embeddings"] if sizes is None else False,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip


def qwen3_vl_processor(tokenizer, max_pixels: int):
    """Qwen3-VL's image processing (16-pixel patches, 2x2 merge, mean/std 0.5) around ``tokenizer``, image-only."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from qhawkeye.modeling import ImageOnlyQwen3VLProcessor

    image_processor = Qwen2VLImageProcessorPil(min_pixels=4096, max_pixels=max_pixels, patch_size=16,
                                               temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3,
                                               image_std=[0.5] * 3)  # fmt: skip
    return ImageOnlyQwen3VLProcessor(image_processor, tokenizer, chat_template=tokenizer.chat_template)


def build_qwen3_vl(
    tokenizer_source: str | Path,
    out: str | Path,
    sizes: ShapeSizes = ShapeSizes(),
    seed: int = 0,
    max_pixels: int = 224 * 224,
) -> Path:
    """A tiny random-weight Qwen3-VL (``Qwen3VLForConditionalGeneration``), from transformers' config classes
    and the real Qwen2 vocabulary, tokenizer and chat template of ``tokenizer_source`` (Qwen3-VL keeps their
    vision and chat special tokens and ids), with Qwen3-VL's image processing (16-pixel patches, mean/std 0.5).
    No real Qwen3-VL folder was available: its own chat template and generation config are not reproduced."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen3VLForConditionalGeneration

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; remove it or choose another folder")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))
    config = qwen3_vl_config(tokenizer, sizes)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    end, pad = config.text_config.eos_token_id, config.text_config.pad_token_id
    model.generation_config = GenerationConfig(eos_token_id=[end, pad], pad_token_id=pad)
    processor = qwen3_vl_processor(tokenizer, max_pixels)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        for name in ("LICENSE", "README.md"):
            if (Path(tokenizer_source) / name).is_file():
                shutil.copyfile(Path(tokenizer_source) / name, tmp / f"tokenizer_{name}")
    return out
