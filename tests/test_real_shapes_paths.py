"""serve (over HTTP), evaluate and the data filter's score mode on the two real-shaped bases: the Qwen2.5-VL
shape with the real tokenizer, template, processor and generation files, and a tiny Qwen3-VL."""

from __future__ import annotations

import base64
import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from server_utils import qhawkeye_serve

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "vendor" / "qwen2_5_vl_7b_instruct"


@pytest.fixture(scope="module", params=["qwen2_5_vl_shape", "qwen3_vl_tiny"])
def base(request, tmp_path_factory):
    from qhawkeye.shaped import build_qwen3_vl, build_shaped_model

    out = tmp_path_factory.mktemp(request.param) / "model"
    if request.param == "qwen3_vl_tiny":
        return build_qwen3_vl(VENDOR, out)
    return build_shaped_model(VENDOR, out)


def _png(seed: int, size=(96, 72)) -> bytes:
    arr = (np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_evaluate_reports_every_image(base, tmp_path):
    from qhawkeye import cli

    data = tmp_path / "bench"
    (data / "images").mkdir(parents=True)
    rows = []
    for n in range(6):
        (data / "images" / f"{n}.png").write_bytes(_png(n))
        rows.append({"id": f"i{n}", "images": [f"images/{n}.png"], "gt_score": 1.0 + 0.7 * n})
    (data / "meta.json").write_text(json.dumps(rows))
    card = {"name": "six", "label_file": "meta.json", "image_root": ".", "format": "deqa", "mos_range": [1, 5],
            "lower_better": False}  # fmt: skip
    (data / "card.yaml").write_text(yaml.safe_dump(card))
    out = tmp_path / "eval"
    args = ["evaluate", "--benchmarks", str(data / "card.yaml"), "--out", str(out), "--model", str(base),
            "--mode", "expected", "--max-new-tokens", "8", "--bootstrap", "0", "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    bench = json.loads((out / "results.json").read_text())["benchmarks"]["six"]
    assert bench["n_total"] == 6 and bench["n"] + bench["parse_failures"] + bench["unreadable"] == 6
    assert bench["unreadable"] == 0  # every image decoded and reached the model; random answers are reported
    assert (out / "results.md").is_file()


@pytest.mark.slow
def test_serve_over_http_and_the_filters_score_mode(base, tmp_path, qh_home):
    with qhawkeye_serve(
        ["--model", str(base), "--max-new-tokens", "8", "--dtype", "float32"], tmp_path / "serve.log"
    ) as url:
        body = {"images": [{"id": "a", "data": base64.b64encode(_png(1)).decode()},
                           {"id": "b", "data": base64.b64encode(b"not an image").decode()}]}  # fmt: skip
        request = urllib.request.Request(url + "/v1/score", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as reply:
            results = json.loads(reply.read())["results"]
        assert results[0]["status"] in ("ok", "parse_failure") and results[0]["text"]
        assert results[1]["status"] == "unreadable"
        chat = {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(_png(2)).decode()}},
            {"type": "text", "text": "Rate the quality."}]}], "max_tokens": 6}  # fmt: skip
        request = urllib.request.Request(url + "/v1/chat/completions", json.dumps(chat).encode(),
                                         {"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as reply:
            answer = json.loads(reply.read())
        assert answer["choices"][0]["finish_reason"] in ("stop", "length")
        assert answer["usage"]["completion_tokens"] <= 6

    from qhawkeye.data.manifest import read_records, write_records
    from qhawkeye.data.vlm_filter import FilterConfig, run_filter

    records = []
    for n in range(2):
        (tmp_path / f"o{n}.png").write_bytes(_png(10 + n))
        (tmp_path / f"d{n}.png").write_bytes(_png(20 + n))
        records.append({"id": f"p{n}", "group_id": f"g{n}", "image": str(tmp_path / f"o{n}.png"), "gt_score": 3.0,
                        "degraded": str(tmp_path / f"d{n}.png"), "degradation": "noise"})  # fmt: skip
    stage = write_records(tmp_path / "degrade", records, "degrade", {"test": True}).parent
    config = FilterConfig("score", model=str(base), max_tokens=8, batch_size=4, threshold=0.5)
    summary = run_filter(stage, tmp_path / "filter", config, progress=False)
    assert summary["complete"] and summary["pairs"] == 2
    for record in read_records(tmp_path / "filter"):
        assert set(record["filter"]) >= {"mode", "flagged"}  # a decision, or None with the reason
