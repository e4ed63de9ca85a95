"""Loading Qwen2.5-VL models and processors from local folders, with or without torchvision.

transformers 5's ``Qwen2_5_VLProcessor`` requires a video processor, which needs torchvision. On machines
without torchvision (the CPU wheel has none), :class:`ImageOnlyQwen2_5_VLProcessor` is used instead: the
same processor with no video part. It is only ever *instantiated* by :func:`load_processor` when
torchvision is missing; nothing is registered globally, so a user's own ``AutoProcessor`` calls are left
alone, and the folders we save name the stock ``Qwen2_5_VLProcessor`` so that they load with stock
transformers (and vLLM) on a GPU machine.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

from transformers import AutoTokenizer, Qwen2_5_VLProcessor, Qwen3VLProcessor
from transformers.processing_utils import ProcessorMixin

from qhawkeye import settings

logger = logging.getLogger(__name__)


def _image_only_init(processor, image_processor, tokenizer, chat_template) -> None:
    """What the stock Qwen processors' ``__init__`` sets, without a video processor."""
    processor.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
    processor.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
    processor.image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    processor.video_token_id = tokenizer.convert_tokens_to_ids(processor.video_token)
    ProcessorMixin.__init__(processor, image_processor, tokenizer, chat_template=chat_template)


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):  # noqa: N801 (mirrors the transformers class name)
    """``Qwen2_5_VLProcessor`` without its video processor (no torchvision needed).

    ProcessorMixin derives its sub-processors from the ``__init__`` signature, so leaving out
    ``video_processor`` makes saving and loading handle only the image processor and the tokenizer.
    It is still a ``Qwen2_5_VLProcessor``, so TRL treats it as a vision-language processor.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        _image_only_init(self, image_processor, tokenizer, chat_template)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save, then name the stock class in the configs so stock transformers loads the folder."""
        out = super().save_pretrained(save_directory, *args, **kwargs)
        _rename_processor_class(Path(save_directory))
        return out


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    """``Qwen3VLProcessor`` without its video processor (no torchvision needed); see
    :class:`ImageOnlyQwen2_5_VLProcessor`. Qwen3-VL's image processor is Qwen2-VL's (patch 16 there)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        _image_only_init(self, image_processor, tokenizer, chat_template)
        self.vision_start_token, self.vision_end_token = "<|vision_start|>", "<|vision_end|>"
        self.vision_start_token_id = tokenizer.convert_tokens_to_ids(self.vision_start_token)
        self.vision_end_token_id = tokenizer.convert_tokens_to_ids(self.vision_end_token)

    def save_pretrained(self, save_directory, *args, **kwargs):
        out = super().save_pretrained(save_directory, *args, **kwargs)
        _rename_processor_class(Path(save_directory))
        return out


IMAGE_ONLY = {"qwen2_5_vl": ImageOnlyQwen2_5_VLProcessor, "qwen3_vl": ImageOnlyQwen3VLProcessor}
"""The image-only processor for each model type (by ``config.json``'s ``model_type``)."""

_STOCK_NAMES = {ImageOnlyQwen2_5_VLProcessor.__name__: Qwen2_5_VLProcessor.__name__,
                ImageOnlyQwen3VLProcessor.__name__: Qwen3VLProcessor.__name__}  # fmt: skip


def _rename_processor_class(folder: Path) -> None:
    for name in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        config = json.loads(path.read_text())
        if config.get("processor_class") in _STOCK_NAMES:
            config["processor_class"] = _STOCK_NAMES[config["processor_class"]]
            path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def model_type(path: str | Path) -> str:
    """``config.json``'s ``model_type`` (``qwen2_5_vl``, ``qwen3_vl``, ...)."""
    return json.loads((Path(path) / "config.json").read_text()).get("model_type", "")


def has_torchvision() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def resolve_model_path(name_or_path: str) -> Path:
    """A local model folder for ``name_or_path``; ``"tiny"`` builds the embedded default on first use.

    Raises:
        FileNotFoundError: the folder does not exist or holds no ``config.json`` (no hub download here:
            download the model first, e.g. ``huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct``).
    """
    if name_or_path in settings.TINY_MODELS:
        from qhawkeye.tiny import ensure_tiny_model

        variant, warm = settings.TINY_MODELS[name_or_path]
        if not warm:
            return ensure_tiny_model(variant)
        folder = settings.tiny_model_dir(name_or_path)
        if not (
            folder / "config.json"
        ).is_file():  # training is an explicit step, never a side effect of loading
            raise FileNotFoundError(
                f"{name_or_path!r} is the tiny model after a format warm start, which is trained, not downloaded: "
                f"run `qhawkeye build-tiny --variant {variant} --format-warm-start` once (under a minute on a CPU)"
            )
        return folder
    path = Path(name_or_path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model folder {str(path)!r} not found or has no config.json. qhawkeye loads models from local "
            "folders only: download one first (e.g. `huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct "
            f"--local-dir <dir>`), or one of {sorted(settings.TINY_MODELS)} for an embedded tiny model."
        )
    return path


def load_processor(path: str | Path, min_pixels: int | None = None, max_pixels: int | None = None):
    """The processor of a local Qwen2.5-VL folder (stock when torchvision exists, image-only otherwise).

    ``min_pixels``/``max_pixels`` override the folder's image-processor limits when given.
    """
    path = Path(path)
    if has_torchvision():
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(path)
    else:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        kind = model_type(path) if (path / "config.json").is_file() else "qwen2_5_vl"
        if kind not in IMAGE_ONLY:
            raise ValueError(
                f"{path}: model type {kind!r} needs torchvision for its processor here; supported without it: "
                f"{sorted(IMAGE_ONLY)}"
            )
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        processor = IMAGE_ONLY[kind](image_processor, tokenizer, chat_template=tokenizer.chat_template)
    set_pixel_limits(processor.image_processor, min_pixels, max_pixels)
    return processor


def set_pixel_limits(image_processor, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
    """Override a Qwen2-VL image processor's pixel limits through ``size`` (transformers 5's only channel)."""
    if min_pixels is None and max_pixels is None:
        return
    size = dict(image_processor.size)
    if min_pixels is not None:
        size["shortest_edge"] = min_pixels
    if max_pixels is not None:
        size["longest_edge"] = max_pixels
    image_processor.size = type(image_processor.size)(**size)


def load_model(path: str | Path, dtype: str = "auto", attn_implementation: str | None = None):
    """The stock ``AutoModelForImageTextToText.from_pretrained`` on a local folder: the class its
    ``config.json`` names (Qwen2.5-VL's ``Qwen2_5_VLForConditionalGeneration`` for every embedded model)."""
    from transformers import AutoModelForImageTextToText

    kwargs = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    return AutoModelForImageTextToText.from_pretrained(Path(path), **kwargs)
