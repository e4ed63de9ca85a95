"""The whole path on a random-weight model of the real Qwen2.5-VL-7B-Instruct's architecture, with its real
tokenizer, chat template, processor settings and generation_config.json (vendor/qwen2_5_vl_7b_instruct).

The toy tokenizer of the other tests has ``<think>``/``<answer>`` as single tokens; the real one splits them
into ordinary text tokens, has digits as single tokens, two end-of-sequence ids, and a generation config
(temperature 1e-6, repetition penalty 1.05) that must never reach rollouts or scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "vendor" / "qwen2_5_vl_7b_instruct"
IM_END, END_OF_TEXT, IMAGE_PAD = 151645, 151643, 151655


@pytest.fixture(scope="session")
def shaped_dir(tmp_path_factory):
    from qhawkeye.shaped import build_shaped_model

    return build_shaped_model(VENDOR, tmp_path_factory.mktemp("shaped") / "qwen2_5_vl_shaped")


@pytest.fixture(scope="module")
def processor(shaped_dir):
    from qhawkeye.modeling import load_processor

    return load_processor(shaped_dir)


def _photo(seed: int, size=(112, 84)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


def test_folder_keeps_the_real_files_and_ids(shaped_dir):
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "chat_template.json",
                 "preprocessor_config.json", "generation_config.json", "LICENSE"):  # fmt: skip
        assert (shaped_dir / name).read_bytes() == (VENDOR / name).read_bytes(), name
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(shaped_dir)
    assert config.get_text_config().vocab_size == 152064 and config.image_token_id == IMAGE_PAD


def test_tags_are_text_digits_are_tokens_and_the_prompt_is_qwens(processor):
    tok = processor.tokenizer
    assert len(tok) == 151665
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        assert len(tok.tokenize(tag)) > 1, tag  # ordinary text, split over several tokens
    assert tok.tokenize("3.75") == ["3", ".", "7", "5"]
    from qhawkeye.scoring.expected import ScoreDigits

    digits = ScoreDigits.for_range(tok, 1.0, 5.0)
    assert [tok.decode([i]) for i in digits.ids] == ["1", "2", "3", "4", "5"]
    from qhawkeye.prompts import build_messages

    text = processor.apply_chat_template(
        build_messages(with_image=True), add_generation_prompt=True, tokenize=False
    )
    batch = processor(text=[text], images=[_photo(0)], return_tensors="pt")
    ids = batch["input_ids"][0].tolist()
    assert ids[:1] == [151644] and ids[-3:] == tok.encode("<|im_start|>assistant\n")
    assert ids.count(151652) == 1 and ids.count(151653) == 1  # vision start / end


def test_what_trl_decodes_still_parses_and_earns_its_rewards(processor):
    from qhawkeye.parsing import parse_score
    from qhawkeye.rewards import FORMAT_REWARD_VALUE, accuracy_reward, format_reward

    tok = processor.tokenizer
    completion = "<think>Sharp, well exposed.</think><answer>3.5</answer>"
    for end in (IM_END, END_OF_TEXT):  # both end-of-sequence ids are special: skipped, tags kept
        ids = tok.encode(completion) + [end]
        text = tok.batch_decode([ids], skip_special_tokens=True)[0]
        assert text == completion
        assert parse_score(text).score == 3.5
        assert format_reward([text]) == [FORMAT_REWARD_VALUE] and accuracy_reward([text], [3.5]) == [1.0]


def test_image_tokens_at_the_recipes_pixel_budget(shaped_dir):
    import yaml

    from qhawkeye.modeling import load_processor

    recipe = yaml.safe_load((ROOT / "configs" / "train" / "qwen2_5_vl_7b.yaml").read_text())
    processor = load_processor(shaped_dir, min_pixels=recipe["min_pixels"], max_pixels=recipe["max_pixels"])
    from qhawkeye.prompts import build_messages

    text = processor.apply_chat_template(
        build_messages(with_image=True), add_generation_prompt=True, tokenize=False
    )
    for size in ((1024, 768), (4000, 3000), (300, 200)):
        batch = processor(text=[text], images=[_photo(1, size)], return_tensors="pt")
        t, h, w = batch["image_grid_thw"][0].tolist()
        assert t == 1 and h % 2 == 0 and w % 2 == 0
        assert h * w * 14 * 14 <= recipe["max_pixels"]
        assert batch["input_ids"][0].tolist().count(IMAGE_PAD) == h * w // 4  # merged 2x2 patches
        if size == (1024, 768):
            assert (h * 14, w * 14) == (756, 1036)  # rounded to multiples of 28 within the budget


def test_the_folders_generation_config_never_reaches_scores(shaped_dir, processor):
    """Greedy scoring must equal plain greedy decoding (no repetition penalty, no temperature, both end ids)."""
    from transformers import GenerationConfig

    from qhawkeye.modeling import load_model
    from qhawkeye.prompts import build_messages
    from qhawkeye.scoring import create_scorer

    scorer = create_scorer(str(shaped_dir), max_new_tokens=24, batch_size=2, dtype="float32")
    own = scorer.generation_config
    assert own.do_sample is False and own.repetition_penalty in (None, 1.0)  # the folder says True and 1.05
    assert getattr(own, "temperature", None) in (None, 1.0)  # the folder says 1e-6
    assert set(own.eos_token_id) == {IM_END, END_OF_TEXT}
    images = [_photo(2), _photo(3)]
    results = scorer.score_batch(images, ["a", "b"])
    model = load_model(shaped_dir, dtype="float32")
    text = processor.apply_chat_template(
        build_messages(with_image=True), add_generation_prompt=True, tokenize=False
    )
    plain = GenerationConfig(do_sample=False, max_new_tokens=24, eos_token_id=[IM_END, END_OF_TEXT],
                             pad_token_id=END_OF_TEXT, repetition_penalty=1.0)  # fmt: skip
    for image, result in zip(images, results, strict=True):
        batch = processor(text=[text], images=[image], return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**batch, generation_config=plain)
        expected = processor.tokenizer.decode(out[0, batch["input_ids"].size(1) :], skip_special_tokens=True)
        assert result.text == expected
        assert result.status in ("ok", "parse_failure")  # random weights: an answer, parsed or reported


@pytest.mark.slow
def test_train_checkpoint_resume_and_score_on_the_real_shape(shaped_dir, paired_dataset_dir, tmp_path):
    """Q-Hawkeye GRPO (UADO + PAO) on the real tokenizer and architecture: trains, checkpoints, resumes to the
    same weights, and the trained folder scores with the real tokenizer."""
    from trainer_utils import train_interrupt_resume

    from qhawkeye.prompts import build_messages
    from qhawkeye.scoring import create_scorer

    full = train_interrupt_resume(shaped_dir, paired_dataset_dir, tmp_path)
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLForConditionalGeneration

    stock = AutoModelForImageTextToText.from_pretrained(full, dtype=torch.float32)  # what users load it with
    assert type(stock) is Qwen2_5_VLForConditionalGeneration
    from qhawkeye.modeling import load_processor

    processor = load_processor(full)
    text = processor.apply_chat_template(
        build_messages(with_image=True), add_generation_prompt=True, tokenize=False
    )
    batch = processor(text=[text], images=[_photo(6)], return_tensors="pt")
    base = AutoModelForImageTextToText.from_pretrained(shaped_dir, dtype=torch.float32)
    with torch.inference_mode():
        trained_logits, base_logits = stock(**batch).logits, base(**batch).logits
    assert not torch.allclose(trained_logits, base_logits)  # the trained weights, not the base's, were loaded
    result = create_scorer(str(full), max_new_tokens=8, dtype="float32").score(_photo(5))
    assert result.status in ("ok", "parse_failure") and result.n_draws == 1


def test_rollouts_sample_whatever_the_folders_generation_config_says(
    shaped_dir, paired_dataset_dir, tmp_path
):
    """A checkpoint's generation_config.json may ask for near-greedy decoding (the hub's Qwen2.5-VL-7B-Instruct:
    top_k 1, top_p 0.001, temperature 0.1, repetition penalty 1.05). transformers fills a generation config's
    unset fields from the model's, so a rollout config that leaves them unset would make all G rollouts of an
    image identical and every advantage zero. The recipe's explicit values must win."""
    import json
    import shutil

    from trainer_utils import fixed_batch, make_config, make_trainer

    folder = tmp_path / "greedy_folder"
    shutil.copytree(shaped_dir, folder)
    (folder / "generation_config.json").write_text(json.dumps({
        "bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
        "repetition_penalty": 1.05, "temperature": 0.1, "top_k": 1, "top_p": 0.001,
    }))  # fmt: skip
    config = make_config(
        tmp_path / "out", max_completion_length=8, use_uado=True, use_pao=False, pao_eta1=0.0
    )
    trainer = make_trainer(folder, paired_dataset_dir, config)
    effective, _ = trainer.model._prepare_generation_config(trainer.generation_config)
    assert effective.do_sample and effective.temperature == 1.0 and effective.repetition_penalty == 1.0
    assert effective.top_k in (0, None) and effective.top_p == 1.0
    batch = fixed_batch(trainer, n_images=1)
    rollouts = batch["completion_ids"].tolist()
    assert len(rollouts) == 4 and len({tuple(r) for r in rollouts}) > 1  # G different answers to one image
