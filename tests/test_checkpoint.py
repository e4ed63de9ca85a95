"""Restoring checkpoint weights saved under transformers' legacy names, strictly."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from qhawkeye.modeling import load_model
from qhawkeye.tiny import VARIANTS, build_model, build_tokenizer
from qhawkeye.train.checkpoint import load_weights_into, saved_name_map


def test_saved_names_are_the_legacy_ones_and_map_back(tiny_model_dir):
    model = load_model(tiny_model_dir, dtype="float32")
    names = saved_name_map(model)
    saved = set(load_file(str(tiny_model_dir / "model.safetensors")))
    assert set(names) == saved  # every saved name maps to a live parameter
    assert "model.layers.0.mlp.up_proj.weight" in names  # legacy name on disk ...
    assert names["model.layers.0.mlp.up_proj.weight"] == "model.language_model.layers.0.mlp.up_proj.weight"


def test_load_weights_into_restores_every_tensor(tiny_model_dir):
    model = load_model(tiny_model_dir, dtype="float32")
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert load_weights_into(model, tiny_model_dir) == len(
        load_file(str(tiny_model_dir / "model.safetensors"))
    )
    for k, v in model.state_dict().items():
        assert torch.equal(v, reference[k]), k


def test_load_weights_into_refuses_another_model(tiny_model_dir, tmp_path):
    small = build_model(build_tokenizer(), VARIANTS["small"])
    with pytest.raises(ValueError, match="shape"):
        load_weights_into(small, tiny_model_dir)
    model = load_model(tiny_model_dir, dtype="float32")
    partial = load_file(str(tiny_model_dir / "model.safetensors"))
    partial.pop("lm_head.weight")
    save_file(partial, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="missing.*lm_head"):
        load_weights_into(model, tmp_path)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_weights_into(model, tmp_path / "nowhere")
