"""Qwen3-VL as a base: a tiny random-weight Qwen3VLForConditionalGeneration (built from transformers' config
classes and the real Qwen2 vocabulary, qhawkeye.shaped.build_qwen3_vl) trains with UADO and PAO, checkpoints,
resumes to the same weights, loads through stock transformers and scores in every mode. No real Qwen3-VL folder
was available: its own chat template and generation config are not covered (README)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "vendor" / "qwen2_5_vl_7b_instruct"


@pytest.fixture(scope="session")
def qwen3_dir(tmp_path_factory):
    from qhawkeye.shaped import build_qwen3_vl

    return build_qwen3_vl(VENDOR, tmp_path_factory.mktemp("qwen3") / "qwen3_vl_tiny")


def _photo(seed: int) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((90, 120, 3)) * 255).astype("uint8"))


def test_loads_stock_and_scores_in_every_mode(qwen3_dir):
    from transformers import AutoModelForImageTextToText, Qwen3VLForConditionalGeneration

    from qhawkeye.modeling import load_processor
    from qhawkeye.scoring import create_scorer

    assert type(AutoModelForImageTextToText.from_pretrained(qwen3_dir)) is Qwen3VLForConditionalGeneration
    processor = load_processor(qwen3_dir)
    assert processor.image_processor.patch_size == 16  # Qwen3-VL's patches, not Qwen2.5-VL's 14
    images = [_photo(0), _photo(1)]
    for mode in ("greedy", "expected", "sample"):
        scorer = create_scorer(str(qwen3_dir), mode=mode, num_samples=2, max_new_tokens=8, dtype="float32")
        results = scorer.score_batch(images, ["a", "b"])
        assert [r.id for r in results] == ["a", "b"]
        assert all(r.status in ("ok", "parse_failure") and r.text for r in results), mode  # random: reported
    again = create_scorer(str(qwen3_dir), max_new_tokens=8, dtype="float32").score_batch(images, ["a", "b"])
    first = create_scorer(str(qwen3_dir), max_new_tokens=8, dtype="float32").score_batch(images[:1], ["a"])
    assert again[0].text == first[0].text  # batched == alone


@pytest.mark.slow
def test_qhawkeye_trains_and_resumes_exactly_on_qwen3_vl(qwen3_dir, paired_dataset_dir, tmp_path):
    import json

    from trainer_utils import train_interrupt_resume

    full = train_interrupt_resume(qwen3_dir, paired_dataset_dir, tmp_path)
    state = json.loads((full / "checkpoint-2" / "trainer_state.json").read_text())
    logged = {k for h in state["log_history"] for k in h}
    assert {"qhawkeye/kl_prcp", "qhawkeye/uado_weight"} <= logged  # PAO and UADO ran
    from qhawkeye.scoring import create_scorer

    assert create_scorer(str(full), max_new_tokens=8, dtype="float32").score(_photo(2)).n_draws == 1
