"""The embedded default is a real Qwen2.5-VL folder, loaded through from_pretrained, offline."""

import json

import torch
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from qhawkeye.modeling import load_model, load_processor, resolve_model_path
from qhawkeye.prompts import build_messages


def test_folder_names_stock_classes(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    processor_config = json.loads((tiny_model_dir / "processor_config.json").read_text())
    assert processor_config["processor_class"] == "Qwen2_5_VLProcessor"  # loads with stock transformers


def test_resolve_tiny_and_missing_folder(tiny_model_dir, tmp_path):
    assert resolve_model_path("tiny") == tiny_model_dir
    import pytest

    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model_path(str(tmp_path))


def test_loads_and_generates_with_image(tiny_model_dir):
    processor = load_processor(tiny_model_dir)
    model = load_model(tiny_model_dir, dtype="float32")
    assert isinstance(processor, Qwen2_5_VLProcessor) and isinstance(
        model, Qwen2_5_VLForConditionalGeneration
    )
    assert model.config._attn_implementation == "sdpa"
    text = processor.apply_chat_template(
        build_messages(with_image=True), add_generation_prompt=True, tokenize=False
    )
    image = Image.new("RGB", (112, 112), (200, 100, 50))
    batch = processor(text=[text], images=[image], return_tensors="pt")
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8]]  # 112 / 14 = 8 patches a side
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert (
        out.shape[1] == batch["input_ids"].shape[1] + 5
        or out[0, -1].item() in model.generation_config.eos_token_id
    )


def test_tags_survive_decoding_and_pixel_limits_apply(tiny_model_dir):
    processor = load_processor(tiny_model_dir, max_pixels=56 * 56)
    tokenizer = processor.tokenizer
    ids = tokenizer("<think> sharp</think><answer>2.75</answer><|im_end|>")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think> sharp</think><answer>2.75</answer>"
    grid = processor.image_processor(images=[Image.new("RGB", (224, 224))], return_tensors="pt")[
        "image_grid_thw"
    ]
    assert grid.prod().item() * 14 * 14 <= 56 * 56 * 1.0 + 1  # max_pixels override took effect


def test_loading_a_format_model_never_trains_it(tmp_path, monkeypatch):
    import pytest

    from qhawkeye import settings

    monkeypatch.setenv("QHAWKEYE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"build-tiny --variant tiny --format-warm-start"):
        resolve_model_path("tiny-format")
    assert not settings.tiny_model_dir("tiny-format").exists()
