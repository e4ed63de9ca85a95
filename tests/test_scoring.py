"""The Scorer on the tiny offline model: batching, seeded sampling, failures reported, resumable files."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qhawkeye import cli
from qhawkeye.scoring import ScorerConfig, create_scorer
from qhawkeye.scoring.generation import GenerationRequest, RowSampler, filter_logits
from qhawkeye.scoring.io import ResultFile, collect_inputs
from qhawkeye.scoring.main import run


def _image(seed: int, h: int = 112, w: int = 112) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def greedy(format_model_dir):
    return create_scorer(str(format_model_dir), max_new_tokens=24, batch_size=8)


@pytest.fixture(scope="module")
def sampler(format_model_dir):
    return create_scorer(str(format_model_dir), mode="sample", num_samples=4, max_new_tokens=24, batch_size=8)


@pytest.fixture()
def image_folder(tmp_path):
    """Five real PNGs (two in a sub-folder) and one file that is not an image."""
    for n in range(5):
        sub = tmp_path / ("sub" if n >= 3 else ".")
        sub.mkdir(exist_ok=True)
        _image(n, 96 + 16 * n, 112).save(sub / f"img{n}.png")
    (tmp_path / "broken.jpg").write_bytes(b"definitely not a jpeg")
    return tmp_path


def test_batched_greedy_matches_one_by_one(greedy):
    # Different sizes, so the batch is left-padded: each row's per-step log-probs of the tokens it chose
    # must equal the unpadded single-image run's, within float tolerance.
    images = [_image(n, 84 + 28 * n, 112) for n in range(4)]
    batch = greedy.generate([greedy.request(im) for im in images], return_logprobs=True)
    for image, row in zip(images, batch, strict=True):
        alone = greedy.generate([greedy.request(image)], return_logprobs=True)[0]
        assert row.text == alone.text
        torch.testing.assert_close(row.logprobs, alone.logprobs, atol=2e-4, rtol=0)
    assert len({len(g.logprobs) for g in batch}) >= 1 and all(g.completion_tokens > 0 for g in batch)


def test_sample_mode_summary_is_consistent_with_its_draws(sampler):
    results = sampler.score_batch([_image(n) for n in range(3)], ids=["a", "b", "c"])
    for r in results:
        assert r.n_draws == 4 and len(r.draws) == 4
        parsed = [d.score for d in r.draws if d.score is not None]
        assert r.n_parsed == len(parsed)
        if len(parsed) >= 2:
            mean = sum(parsed) / len(parsed)
            var = sum((s - mean) ** 2 for s in parsed) / len(parsed)  # population variance, as UADO
            assert r.score == pytest.approx(mean) and r.std == pytest.approx(math.sqrt(var))
            assert r.uncertainty == pytest.approx(min(var / 4.0, 1.0))  # var_max = (5 - 1)^2 / 4
            assert 1.0 <= r.score <= 5.0
    assert any(r.n_parsed >= 2 for r in results), "the format model should parse most draws"


def test_sampling_is_seeded(format_model_dir, sampler):
    images = [_image(n) for n in range(3)]
    first = [r.to_dict() for r in sampler.score_batch(images, ids=["a", "b", "c"])]
    again = [r.to_dict() for r in sampler.score_batch(images, ids=["a", "b", "c"])]
    assert first == again
    twins = sampler.score_batch([images[0], images[0].copy()], ids=["x", "y"])  # same pixels, other names
    assert [d.text for d in twins[0].draws] == [d.text for d in twins[1].draws]
    other = create_scorer(str(format_model_dir), mode="sample", num_samples=4, max_new_tokens=24, seed=1)
    texts = [d["text"] for r in first for d in r["draws"]]
    assert texts != [
        d["text"] for r in other.score_batch(images, ids=["a", "b", "c"]) for d in r.to_dict()["draws"]
    ]


def test_row_sampler_rows_are_independent_and_follow_the_distribution():
    torch.manual_seed(0)
    logits = torch.randn(3, 6)
    reqs = [GenerationRequest([], [], 1, seed=s) for s in (11, 12, 13)]
    alone = RowSampler(reqs[1:2])(None, logits[1:2])
    together = RowSampler(reqs)(None, logits)
    assert together[1].argmax() == alone[0].argmax()  # a row's draw does not depend on its neighbours
    # 20000 draws from one row follow softmax(logits) (4-sigma binomial bound per token)
    sampler = RowSampler([GenerationRequest([], [], 1, seed=5)])
    counts = torch.bincount(
        torch.stack([sampler(None, logits[:1])[0].argmax() for _ in range(20000)]), minlength=6
    )
    probs = logits[0].softmax(-1)
    assert torch.all((counts / 20000 - probs).abs() <= 4 * (probs * (1 - probs) / 20000).sqrt())
    greedy_row = RowSampler([GenerationRequest([], [], 1, seed=None)])(None, logits[:1])
    torch.testing.assert_close(greedy_row, logits[:1])  # rows without a seed are left for greedy decoding


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert torch.isinf(filter_logits(logits, 1.0, 2, 1.0)).tolist() == [False, False, True, True]
    # top_p 0.7: keep 0.5 and 0.3 (the token that crosses 0.7), drop the rest
    assert torch.isinf(filter_logits(logits, 1.0, 0, 0.7)).tolist() == [False, False, True, True]
    assert torch.isinf(filter_logits(logits, 1.0, 0, 0.4)).tolist() == [False, True, True, True]


def test_parse_failures_are_reported_not_scored(tiny_model_dir):
    scorer = create_scorer(str(tiny_model_dir), max_new_tokens=8)  # untrained: never writes the format
    result = scorer.score(_image(0))
    assert result.status == "parse_failure" and result.score is None and not result.parsed
    assert result.error and result.text


def test_corrupt_image_is_reported_and_the_rest_scored(format_model_dir, image_folder, tmp_path):
    out = tmp_path / "out" / "scores.jsonl"
    config = ScorerConfig(model=str(format_model_dir), max_new_tokens=24, batch_size=4)
    summary = run([str(image_folder)], config, out=str(out), progress=False)
    assert summary["images"] == 6 and summary["unreadable"] == 1 and summary["scored_now"] == 6
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["id"] for r in rows} == {
        "broken.jpg",
        "img0.png",
        "img1.png",
        "img2.png",
        "sub/img3.png",
        "sub/img4.png",
    }
    broken = next(r for r in rows if r["id"] == "broken.jpg")
    assert broken["status"] == "unreadable" and broken["score"] is None and "broken.jpg" in broken["error"]
    assert all(r["score"] is None or 1 <= r["score"] <= 5 for r in rows)
    in_python = create_scorer(str(format_model_dir), max_new_tokens=24, batch_size=4).score_folder(
        image_folder
    )
    assert [r.to_dict() for r in in_python] == [
        {k: v for k, v in r.items() if k != "path"} for r in sorted(rows, key=lambda r: r["id"])
    ]


def test_score_file_resumes_and_refuses_other_settings(format_model_dir, image_folder, tmp_path):
    out = tmp_path / "scores.jsonl"
    config = ScorerConfig(model=str(format_model_dir), max_new_tokens=24, batch_size=2)
    first = run([str(image_folder)], config, out=str(out), limit=3, progress=False)
    assert first["scored_now"] == 3
    with out.open("a") as f:  # a killed run leaves half a line
        f.write('{"id": "img9.png", "sco')
    second = run([str(image_folder)], config, out=str(out), progress=False)
    assert second["already_done"] == 3 and second["scored_now"] == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    third = run([str(image_folder)], config, out=str(out), progress=False)
    assert third["scored_now"] == 0
    other = ScorerConfig(model=str(format_model_dir), max_new_tokens=25, batch_size=2)
    with pytest.raises(FileExistsError, match="decoding"):
        run([str(image_folder)], other, out=str(out), progress=False)


def test_cli_writes_csv_and_reads_manifests(format_model_dir, image_folder, tmp_path, capsys):
    manifest = tmp_path / "meta.json"
    rows = [{"id": f"x{n}", "images": [f"{image_folder.name}/img{n}.png"], "gt_score": 3.0} for n in range(3)]
    shutil.copytree(image_folder, tmp_path / image_folder.name, dirs_exist_ok=True)
    manifest.write_text(json.dumps(rows))
    assert [i.id for i in collect_inputs([manifest])] == ["x0", "x1", "x2"]
    out = tmp_path / "scores.csv"
    code = cli.main(["score", str(manifest), "--out", str(out), "--model", str(format_model_dir),
                     "--max-new-tokens", "24", "--quiet"])  # fmt: skip
    assert code == 0
    import csv

    table = list(csv.DictReader(out.open()))
    assert [r["id"] for r in table] == ["x0", "x1", "x2"] and "3 images" in capsys.readouterr().err
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "image": "x.png"}\n{"id": "a", "image": "y.png"}\n')
    with pytest.raises(ValueError, match="duplicate image id 'a'"):
        collect_inputs([dup])
    assert cli.main(["score", str(tmp_path / "nowhere"), "--model", str(format_model_dir)]) == 1


def test_result_file_refuses_a_foreign_file(tmp_path):
    foreign = tmp_path / "mine.jsonl"
    foreign.write_text('{"something": 1}\n')
    with pytest.raises(FileExistsError, match="not written by qhawkeye"):
        ResultFile(foreign, {"model": "x"})
    assert foreign.read_text() == '{"something": 1}\n'


def test_lora_adapter_folder_scores_like_the_merged_model(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from qhawkeye.modeling import load_model, load_processor

    base = load_model(tiny_model_dir, dtype="float32")
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(tmp_path / "adapter")
    load_processor(tiny_model_dir).save_pretrained(tmp_path / "adapter")
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    load_processor(tiny_model_dir).save_pretrained(tmp_path / "merged")
    image = _image(3)
    via_adapter = create_scorer(str(tmp_path / "adapter"), max_new_tokens=12)
    via_merged = create_scorer(str(tmp_path / "merged"), max_new_tokens=12)
    plain = create_scorer(str(tiny_model_dir), max_new_tokens=12)
    a = via_adapter.generate([via_adapter.request(image)], return_logprobs=True)[0]
    m = via_merged.generate([via_merged.request(image)], return_logprobs=True)[0]
    p = plain.generate([plain.request(image)], return_logprobs=True)[0]
    assert a.text == m.text
    torch.testing.assert_close(a.logprobs, m.logprobs, atol=1e-4, rtol=0)
    assert not torch.allclose(a.logprobs[:1], p.logprobs[:1], atol=1e-4)  # the adapter changed the model


def test_expected_mode_reads_the_first_digit_distribution(format_model_dir):
    """The expected score equals sum_d d * p(d) for d in 1..5, with p recomputed here by one teacher-forced
    forward pass over prompt + greedy answer up to its first digit (independent of generate's logits)."""
    from qhawkeye import prompts

    scorer = create_scorer(str(format_model_dir), mode="expected", max_new_tokens=32, batch_size=4)
    images = [_image(n) for n in range(3)]
    results = scorer.score_batch(images)
    assert [r.score for r in results] == [r.score for r in scorer.score_batch(images)]  # deterministic
    processor, tokenizer = scorer.processor, scorer.processor.tokenizer
    digit_ids = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(1, 6)]
    for image, result in zip(images, results, strict=True):
        assert result.status == "ok" and len(result.digit_probs) == 5
        assert sum(result.digit_probs) == pytest.approx(1.0)
        assert result.score == pytest.approx(
            sum(d * p for d, p in zip(range(1, 6), result.digit_probs, strict=True))
        )
        assert 1.0 <= result.score <= 5.0 and result.uncertainty == pytest.approx(result.std**2 / 4)
        answer = result.text.index("<answer>") + len("<answer>")
        prefix = result.text[:answer]
        prompt = processor.apply_chat_template(prompts.build_messages(with_image=True), add_generation_prompt=True,
                                               tokenize=False)  # fmt: skip
        batch = processor(text=[prompt + prefix], images=[image], return_tensors="pt")
        with torch.no_grad():
            logits = scorer.model(**batch).logits[0, -1]
        expected = logits.double().log_softmax(-1)[digit_ids].softmax(-1)
        assert result.digit_probs == pytest.approx(expected.tolist(), abs=1e-4)


def test_expected_mode_reports_a_parse_failure(tiny_model_dir):
    result = create_scorer(str(tiny_model_dir), mode="expected", max_new_tokens=8).score(_image(0))
    assert result.status == "parse_failure" and result.score is None and result.error


def test_token_index_at_maps_characters_to_tokens(format_model_dir):
    from transformers import AutoTokenizer

    from qhawkeye.parsing import parse_score
    from qhawkeye.scoring.expected import token_index_at

    tokenizer = AutoTokenizer.from_pretrained(format_model_dir)
    text = "<think>the image is dark.</think><answer> 3.75</answer>"
    ids = tokenizer.encode(text + "<|im_end|>", add_special_tokens=False)
    parsed = parse_score(text)
    index = token_index_at(tokenizer, ids, parsed.digit_at)
    assert tokenizer.decode([ids[index]]) == "3"
    assert token_index_at(tokenizer, ids, 10_000) is None


@pytest.mark.parametrize("cut", ["inside_text", "after_newline_in_text", "mid_id"])
def test_csv_resume_after_a_torn_row_neither_loses_nor_duplicates(tmp_path, cut):
    """Answer texts may hold newlines: a CSV row torn inside its quoted text must be dropped whole."""
    import csv

    from qhawkeye.scoring.scorer import ScoreResult

    out = tmp_path / "scores.csv"
    first = ResultFile(out, {"model": "m"})
    first.append([ScoreResult("a.png", 3.0, "ok", "<think>line one\nline two</think><answer>3</answer>")],
                 {"a.png": Path("a.png")})  # fmt: skip
    torn = {"inside_text": 'b.png,b.png,,"<think>half', "after_newline_in_text": 'b.png,b.png,,"<think>x\n',
            "mid_id": "b.p"}[cut]  # fmt: skip
    with out.open("a", newline="") as f:
        f.write(torn)
    again = ResultFile(out, {"model": "m"})
    assert set(again.done) == {"a.png"}
    again.append([ScoreResult("b.png", 4.0, "ok", "<answer>4</answer>")], {"b.png": Path("b.png")})
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["a.png", "b.png"]
    assert rows[0]["text"] == "<think>line one\nline two</think><answer>3</answer>"


def test_manifest_and_score_file_errors_name_file_and_line(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"image": "a.png"}\n\n{"image": "b.png"}\n{"image": "c.png", oops}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl: line 4 is not valid JSON"):
        collect_inputs([manifest])
    manifest.write_text('{"image": "a.png"}\n\n{"id": "x"}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl: line 3 has no image path"):
        collect_inputs([manifest])
    out = tmp_path / "scores.jsonl"
    ResultFile(out, {"model": "m"})
    out.write_text('{"id": "a", "score": 3}\n{"id": "b", "sc\x00ore": }\n{"id": "c"}\n')
    with pytest.raises(ValueError, match=r"scores\.jsonl: line 2 is not valid JSON"):
        ResultFile(out, {"model": "m"})
    out.write_text('{"id": "a", "score": 3}\n{"id": "b"}\n{"id": "a", "score": 2}\n')
    with pytest.raises(ValueError, match=r"scores\.jsonl: record 3 repeats the id 'a' of record 1"):
        ResultFile(out, {"model": "m"})
    out.write_text('{"id": "a", "score": 3}\n')
    out.with_name("scores.jsonl.run.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"scores\.jsonl\.run\.json: not valid JSON"):
        ResultFile(out, {"model": "m"})


def test_expected_score_refuses_out_of_range_numbers():
    """A number like 1911 is clipped to 5 by the parser, but its first digit says 1: no expected score."""
    from qhawkeye.parsing import parse_score
    from qhawkeye.scoring.expected import ScoreDigits, expected_score

    digits = ScoreDigits((1, 2, 3, 4, 5), (11, 12, 13, 14, 15))
    text = "<think>x</think><answer>1911</answer>"
    result = expected_score(parse_score(text), text, [1, 2, 3], torch.zeros(3, 5), digits, tokenizer=None)
    assert result.score is None and "outside the score range" in result.error
