"""The filter stage over real HTTP on loopback: our own `qhawkeye serve`, and a scripted stdlib server.

The degrade-stage folder is built here: real PNGs, degraded copies made by ``degrade``, a manifest written by
``write_records``. ``qhawkeye serve`` (the tiny format model, as a subprocess) answers /v1/score and
/v1/chat/completions; a ``ThreadingHTTPServer`` in a thread answers yes/no deterministically, fails the first
requests with 503 and counts every request, for the retry, resume and error paths.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from server_utils import wait_healthy

from qhawkeye.data import vlm_filter
from qhawkeye.data.degradations import DEGRADATIONS, degrade
from qhawkeye.data.http_client import RequestFailed, Transient, backoff_delay, with_retries
from qhawkeye.data.manifest import read_records, write_records
from qhawkeye.data.vlm_filter import FilterConfig, parse_yes_no, run_filter

PAIRS = 6
KEY = "filter-key"
MODEL_ID = "qh-tiny"
ANSWERS = ["yes", "No.", "I cannot tell"]  # flagged, not flagged, undecided


def _degrade_stage(root: Path) -> Path:
    """root/degrade: PAIRS originals (48x48 PNGs) and their degraded copies, one degradation type each."""
    (root / "originals").mkdir(parents=True)
    (root / "degraded").mkdir()
    names, records = list(DEGRADATIONS), []
    for n in range(PAIRS):
        rng = np.random.default_rng(n)
        ramp = np.linspace(0, 200, 48)[None, :, None] + rng.normal(0, 20, (48, 48, 3))
        original = Image.fromarray(np.clip(ramp, 0, 255).astype("uint8"))
        image, degraded = root / "originals" / f"{n}.png", root / "degraded" / f"{n}.png"
        original.save(image)
        degrade(original, names[n % 4], np.random.default_rng(100 + n)).save(degraded)
        records.append(
            {
                "id": f"p{n}",
                "group_id": f"g{n}",
                "source": "test",
                "image": str(image),
                "gt_score": 3.0,
                "degraded": str(degraded),
                "degradation": names[n % 4],
                "degradation_seed": 0,
            }
        )
    return write_records(root / "degrade", records, "degrade", {"test": True}).parent


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def stage(tmp_path):
    return _degrade_stage(tmp_path / "inputs")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- fake VLM


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeVLM:
    """Chat completions answering from ``answers`` (degraded image sha256 -> text), counting every request."""

    def __init__(self, answers: dict[str, str], fail_first: int = 0, delay_s: float = 0.0):
        self.answers, self.fail_left, self.delay_s = answers, fail_first, delay_s
        self.lock = threading.Lock()
        self.requests, self.answered, self.auth = 0, Counter(), set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload = fake.reply(self.path, body, self.headers.get("Authorization"))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def reply(self, path: str, body: dict, auth: str | None) -> tuple[int, dict]:
        with self.lock:
            self.requests += 1
            self.auth.add(auth)
            failing, self.fail_left = self.fail_left > 0, max(self.fail_left - 1, 0)
        time.sleep(self.delay_s)
        if failing:
            return 503, {"error": {"message": "overloaded, try again"}}
        if path != "/v1/chat/completions" or body.get("model") == "reject":
            return 400, {"error": {"message": f"model {body.get('model')!r} does not exist"}}
        parts = [p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"]]
        first = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")  # the degraded one
        key = _digest(base64.b64decode(first.split("base64,", 1)[1]))
        with self.lock:
            self.answered[key] += 1
        message = {"role": "assistant", "content": self.answers[key]}
        return 200, {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _answers(stage: Path) -> dict[str, str]:
    """Pair n answers ANSWERS[n % 3], keyed by its degraded image's bytes."""
    return {
        _digest(Path(r["degraded"]).read_bytes()): ANSWERS[n % 3] for n, r in enumerate(read_records(stage))
    }


@pytest.fixture()
def fake(stage):
    servers = []

    def start(**kwargs) -> FakeVLM:
        servers.append(FakeVLM(_answers(stage), **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _vlm(url: str, **fields) -> FilterConfig:
    return FilterConfig(
        "vlm", base_url=url, **{"api_key": KEY, "concurrency": 3, "backoff_s": 0.01, **fields}
    )


# ---------------------------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    "text, flagged",
    [
        ("yes", True),
        (" Yes.\n", True),
        ("no", False),
        ("NO", False),
        ("yes, they are", None),
        ("", None),
        ("no..", None),
        ("<answer>yes</answer>", None),
        (None, None),
        ("maybe", None),
    ],
)
def test_yes_no_parsing_is_strict(text, flagged):
    got, error = parse_yes_no(text)
    assert got is flagged and (error is None) == (flagged is not None)


def test_backoff_doubles_with_jitter_and_is_capped():
    config = FilterConfig("vlm", base_url="http://127.0.0.1:1", backoff_s=1.0, max_backoff_s=8.0)
    for attempt, (lo, hi) in enumerate([(0.5, 1), (1, 2), (2, 4), (4, 8), (4, 8)]):
        delays = [backoff_delay(attempt, config) for _ in range(50)]
        assert lo <= min(delays) and max(delays) <= hi
    assert backoff_delay(0, config, retry_after=3) == 3 and backoff_delay(0, config, retry_after=99) == 8


def test_no_retry_starts_once_the_run_is_interrupted():
    calls = []

    def overloaded() -> dict:
        calls.append(1)
        raise Transient("HTTP 503: overloaded")

    config, stop = FilterConfig("vlm", base_url="http://127.0.0.1:1", backoff_s=0.001), threading.Event()
    with pytest.raises(RequestFailed, match="gave up after 5 attempts"):
        with_retries(overloaded, config, "p0", stop)
    stop.set()
    with pytest.raises(RequestFailed, match="interrupted"):
        with_retries(overloaded, config, "p0", stop)
    assert len(calls) == 5 + 1


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"mode": "vlm"}, "pass --base-url"),
        ({"mode": "score"}, "pass --model"),
        ({"mode": "score", "base_url": "http://h:1", "model": "x"}, "leave out"),
        ({"mode": "vlm", "base_url": "h:1"}, "http://"),
        ({"mode": "vlm", "base_url": "http://h", "retries": -1}, "retries"),
        ({"mode": "ssim", "base_url": "http://h:1"}, "leave out --base-url"),
        ({"mode": "ssim", "model": "tiny"}, "no model"),
        ({"mode": "ssim", "ssim_threshold": 1.5}, "ssim_threshold"),
    ],
)
def test_config_errors_say_what_to_do(fields, message):
    with pytest.raises(ValueError, match=message):
        FilterConfig(**fields)


def test_score_decision_uses_the_threshold():
    config = FilterConfig("score", model="unused", threshold=0.5)
    answer = {"raw": ["a", "b"], "scores": [3.3, 2.8], "errors": [None, None]}
    assert vlm_filter.decide(answer, config) | {"flagged": False, "difference": 0.5} == vlm_filter.decide(
        answer, config
    )
    close = {**answer, "scores": [3.3, 2.9]}
    assert vlm_filter.decide(close, config)["flagged"] is True
    broken = {**answer, "scores": [3.3, None], "errors": [None, "no <answer> tag"]}
    expected = {"mode": "score", "flagged": None, "raw": ["a", "b"], "scores": [3.3, None]}
    assert vlm_filter.decide(broken, config) == {**expected, "error": "degraded: no <answer> tag"}


def test_ssim_mode_flags_a_near_identical_pair_not_a_blurred_one(tmp_path):
    from PIL import ImageFilter

    from qhawkeye.sample_data import photos
    from qhawkeye.sample_data.synthetic import ssim

    original = Image.open(photos()[0]).convert("RGB")
    arr = np.asarray(original, dtype=np.int16)
    copies = {
        "near": Image.fromarray(np.clip(arr + (arr % 2), 0, 255).astype("uint8")),  # +1 on odd values
        "blurred": original.filter(ImageFilter.GaussianBlur(radius=4)),
        "resized": original.resize((96, 96)),  # no SSIM: recorded as failed, asked again on a rerun
    }
    original.save(tmp_path / "original.png")
    records = []
    for name, copy in copies.items():
        copy.save(tmp_path / f"{name}.png")
        image, degraded = str(tmp_path / "original.png"), str(tmp_path / f"{name}.png")
        records.append({"id": name, "group_id": name, "image": image, "degraded": degraded, "gt_score": 3.0})
    stage = write_records(tmp_path / "degrade", records, "degrade", {"test": True}).parent
    out = tmp_path / "filter"
    summary = run_filter(stage, out, FilterConfig("ssim"), progress=False)
    assert (summary["flagged"], summary["not_flagged"], summary["failed"], summary["threshold"]) == (
        1,
        1,
        1,
        0.95,
    )
    got = {r["id"]: r["filter"] for r in read_records(out)}
    for name in ("near", "blurred"):
        value = round(ssim(original, copies[name]), 6)
        assert got[name] == {
            "mode": "ssim",
            "flagged": name == "near",
            "raw": value,
            "ssim": value,
            "threshold": 0.95,
        }
    assert got["near"]["ssim"] > 0.99 and got["blurred"]["ssim"] < 0.8
    assert got["resized"]["flagged"] is None and "one size" in got["resized"]["error"]
    strict = run_filter(stage, out, FilterConfig("ssim", ssim_threshold=0.9999), progress=False)
    assert (strict["from_checkpoint"], strict["asked_now"], strict["flagged"]) == (2, 1, 0)


# ---------------------------------------------------------------------------------------- scripted server


def test_resume_asks_each_pair_once_and_matches_an_uninterrupted_run(stage, fake, tmp_path):
    before = _snapshot(stage.parent)
    server = fake(fail_first=3)  # retried with backoff, then answered
    out = tmp_path / "filter"
    first = run_filter(stage, out, _vlm(server.url, max_pairs=2), progress=False)
    assert (first["asked_now"], first["left"], first["complete"]) == (2, 4, False)
    assert (
        not (out / "manifest.jsonl").exists()
        and len((out / "filter_answers.jsonl").read_text().splitlines()) == 2
    )
    second = run_filter(stage, out, _vlm(server.url), progress=False)
    assert (second["from_checkpoint"], second["asked_now"], second["complete"]) == (2, 4, True)
    again = run_filter(stage, out, _vlm(server.url, threshold=1.0), progress=False)
    assert (again["from_checkpoint"], again["asked_now"]) == (6, 0)
    assert server.requests == PAIRS + 3 and sorted(server.answered.values()) == [1] * PAIRS
    assert server.auth == {f"Bearer {KEY}"} and KEY not in (out / "stage.json").read_text()
    with pytest.raises(FileExistsError, match="other filter parameters"):
        run_filter(stage, out, _vlm(server.url, prompt="short"), progress=False)

    fresh = fake()
    whole = run_filter(stage, tmp_path / "whole", _vlm(fresh.url), progress=False)
    assert read_records(out) == read_records(tmp_path / "whole")
    assert {k: whole[k] for k in ("flagged", "not_flagged", "undecided", "failed")} == {
        "flagged": 2,
        "not_flagged": 2,
        "undecided": 2,
        "failed": 0,
    }
    for n, record in enumerate(read_records(out)):
        assert record["filter"]["raw"] == ANSWERS[n % 3]
        assert record["filter"]["flagged"] is [True, False, None][n % 3]
        assert ("error" in record["filter"]) == (n % 3 == 2)
        assert {k: v for k, v in record.items() if k != "filter"} == read_records(stage)[n]
    assert _snapshot(stage.parent) == before


class _StopAfter:
    """A progress bar that raises after ``n`` updates: an interruption in the middle of a run."""

    def __init__(self, n: int, **kwargs):
        self.left = n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt

    def set_postfix(self, **kwargs):
        pass


def test_interrupted_run_keeps_the_answers_in_flight(stage, fake, tmp_path, monkeypatch):
    server = fake(delay_s=0.05)
    out = tmp_path / "filter"
    monkeypatch.setattr(vlm_filter, "tqdm", lambda **kwargs: _StopAfter(2))
    with pytest.raises(KeyboardInterrupt):
        run_filter(stage, out, _vlm(server.url, concurrency=1), progress=False)
    saved = len((out / "filter_answers.jsonl").read_text().splitlines())
    assert 2 <= saved < PAIRS and server.requests == saved and not (out / "manifest.jsonl").exists()
    monkeypatch.undo()
    summary = run_filter(stage, out, _vlm(server.url), progress=False)
    assert (summary["from_checkpoint"], summary["asked_now"], summary["complete"]) == (
        saved,
        PAIRS - saved,
        True,
    )
    assert server.requests == PAIRS and sorted(server.answered.values()) == [1] * PAIRS


def test_client_errors_are_recorded_not_retried(stage, fake, tmp_path):
    server = fake()
    out = tmp_path / "filter"
    summary = run_filter(stage, out, _vlm(server.url, model="reject", retries=3), progress=False)
    assert server.requests == PAIRS and (summary["failed"], summary["complete"]) == (PAIRS, True)
    for record in read_records(out):
        assert record["filter"]["flagged"] is None and record["filter"]["raw"] is None
        assert "HTTP 400" in record["filter"]["error"] and "does not exist" in record["filter"]["error"]
    assert (out / "filter_answers.jsonl").read_text() == ""  # failures are asked again on a rerun
    run_filter(stage, out, _vlm(server.url, model="reject"), progress=False)
    assert server.requests == 2 * PAIRS


def test_connection_errors_are_retried_then_recorded(stage, tmp_path):
    config = _vlm(f"http://127.0.0.1:{_free_port()}", retries=2, backoff_s=0.001)
    summary = run_filter(stage, tmp_path / "filter", config, progress=False)
    assert (summary["failed"], summary["flagged"], summary["complete"]) == (PAIRS, 0, True)
    assert all("gave up after 3 attempts" in r["filter"]["error"] for r in read_records(tmp_path / "filter"))


def test_dry_run_and_cli_flags(stage, fake, tmp_path, monkeypatch):
    server = fake()
    parser = argparse.ArgumentParser()
    vlm_filter.add_arguments(parser)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    out = tmp_path / "filter"
    flags = ["--mode", "vlm", "--base-url", server.url + "/v1/", "--concurrency", "2", "--max-pairs", "5"]
    args = parser.parse_args([str(stage), "--out", str(out), *flags, "--dry-run", "--quiet"])
    monkeypatch.setenv(vlm_filter.API_KEY_ENV, "from-env")
    config = vlm_filter.config_from_args(args)
    assert (config.api_key, config.base_url, config.concurrency, config.max_tokens) == (
        "from-env",
        server.url,
        2,
        16,
    )
    assert "from-env" not in repr(config)
    summary = vlm_filter.run_from_args(args)
    assert summary == {
        "dry_run": True,
        "mode": "vlm",
        "endpoint": server.url + "/v1/chat/completions",
        "pairs": PAIRS,
        "from_checkpoint": 0,
        "to_ask": 5,
        "left": 1,
    }
    assert server.requests == 0 and not out.exists()
    with pytest.raises(SystemExit):
        parser.parse_args([str(stage), "--out", str(out), "--mode", "judge"])


# ---------------------------------------------------------------------------------------- qhawkeye serve


@pytest.fixture(scope="module")
def serve(format_model_dir, qh_home, tmp_path_factory):
    """`qhawkeye serve` on the tiny format model, with an API key, answering at most 24 tokens."""
    log, port = tmp_path_factory.mktemp("filter_serve") / "server.log", _free_port()
    args = ["--model", str(format_model_dir), "--served-model-name", MODEL_ID, "--port", str(port)]
    args += ["--max-new-tokens", "24", "--max-batch-size", "8", "--batch-wait-ms", "20"]
    env = {**os.environ, "QHAWKEYE_HOME": str(qh_home), "HF_HUB_OFFLINE": "1", "QHAWKEYE_API_KEY": KEY}
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qhawkeye.cli", "serve", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _check_score_filter(filt: dict, threshold: float) -> None:
    """Two answers and two scores recorded; flagged only from two parsed scores, else undecided with why."""
    assert filt["mode"] == "score" and len(filt["raw"]) == 2 and all(isinstance(t, str) for t in filt["raw"])
    if None in filt["scores"]:
        assert filt["flagged"] is None and filt["error"]
    else:
        assert filt["flagged"] is (abs(filt["scores"][0] - filt["scores"][1]) < threshold)
        assert filt["difference"] == round(filt["scores"][0] - filt["scores"][1], 6)


def test_score_mode_server_and_local_scorer_agree(serve, stage, format_model_dir, tmp_path):
    before = _snapshot(stage.parent)
    remote = FilterConfig("score", base_url=serve, api_key=KEY, concurrency=3, threshold=0.5)
    summary = run_filter(stage, tmp_path / "remote", remote, progress=False)
    assert summary["complete"] and summary["failed"] == 0 and summary["asked_now"] == PAIRS
    local = FilterConfig("score", model=str(format_model_dir), max_tokens=24, batch_size=4, threshold=0.5)
    run_filter(stage, tmp_path / "local", local, progress=False)
    by_server, here = read_records(tmp_path / "remote"), read_records(tmp_path / "local")
    for a, b in zip(by_server, here, strict=True):
        _check_score_filter(a["filter"], 0.5)
        assert a["filter"] == b["filter"]  # greedy decoding: the same answers, scores and decisions
    assert any(s is not None for r in by_server for s in r["filter"]["scores"])
    assert _snapshot(stage.parent) == before


def test_vlm_mode_through_our_chat_endpoint_records_answers_and_never_invents_a_decision(
    serve, stage, tmp_path
):
    config = FilterConfig("vlm", base_url=serve + "/v1", api_key=KEY, model=MODEL_ID, max_tokens=8)
    summary = run_filter(stage, tmp_path / "filter", config, progress=False)
    assert summary["complete"] and summary["failed"] == 0
    for record in read_records(tmp_path / "filter"):
        filt = record["filter"]
        assert isinstance(filt["raw"], str)  # the tiny model does not answer yes/no: recorded as it came
        flagged, error = parse_yes_no(filt["raw"])
        assert filt["flagged"] is flagged and filt.get("error") == error
    assert summary["undecided"] == sum(
        r["filter"]["flagged"] is None for r in read_records(tmp_path / "filter")
    )
    bad_key = dataclasses.replace(config, api_key="wrong", retries=0)
    failed = run_filter(stage, tmp_path / "bad", bad_key, progress=False)
    assert failed["failed"] == PAIRS
    assert all("HTTP 401" in r["filter"]["error"] for r in read_records(tmp_path / "bad"))
