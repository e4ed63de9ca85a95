"""`qhawkeye serve` over real HTTP on loopback: one server subprocess (the tiny format model) per module.

The server is started as ``python -m qhawkeye.cli serve`` (what the ``qhawkeye serve`` console script runs)
with small limits, an API key (from the environment) and an image root holding two PNGs and a symlink that points outside it; requests go through
urllib. The batching worker's failure isolation and queue bound are tested in-process with a fake scorer.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from server_utils import wait_healthy

from qhawkeye import prompts
from qhawkeye.serve.main import ServeConfig, add_arguments, config_from_args

KEY = "test-key-123"
MODEL_ID = "qh-tiny"
TOKEN_LIMIT = 24
LIMITS = {
    "--max-image-bytes": 100_000,
    "--max-image-pixels": 100_000,
    "--max-body-bytes": 600_000,
    "--max-images-per-request": 4,
}


@dataclass
class Server:
    url: str
    root: Path
    log: Path


def _png(size=(32, 32), colour=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _image_root(tmp: Path) -> Path:
    """root/a.png, root/sub/b.png, root/link.png -> outside/secret.png."""
    root, outside = tmp / "root", tmp / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "a.png").write_bytes(_png(colour=(10, 200, 10)))
    (root / "sub" / "b.png").write_bytes(_png(colour=(10, 10, 200)))
    (outside / "secret.png").write_bytes(_png())
    (root / "link.png").symlink_to(outside / "secret.png")
    return root


@pytest.fixture(scope="module")
def server(format_model_dir, qh_home, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    root, log = _image_root(tmp), tmp / "server.log"
    port = _free_port()
    args = ["--model", "tiny-format", "--served-model-name", MODEL_ID, "--port", str(port)]
    args += ["--max-new-tokens", str(TOKEN_LIMIT), "--image-root", str(root)]
    args += ["--max-batch-size", "8", "--batch-wait-ms", "50"]
    args += [str(x) for item in LIMITS.items() for x in item]
    env = {**os.environ, "QHAWKEYE_HOME": str(qh_home), "HF_HUB_OFFLINE": "1", "QHAWKEYE_API_KEY": KEY}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qhawkeye.cli", "serve", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        yield Server(f"http://127.0.0.1:{port}", root, log)
        proc.send_signal(signal.SIGINT)  # a graceful stop: the worker and uvicorn shut down cleanly
        proc.wait(timeout=20)
        assert "Application shutdown complete" in log.read_text(), log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _request(server: Server, path: str, body=None, key: str | None = KEY, raw: bytes | None = None):
    """(status, JSON body) of one request; errors are returned, not raised."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(server.url + path, data=data, method="GET" if data is None else "POST")
    req.add_header("Content-Type", "application/json")
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _chat_body(image: bytes | None = None, **fields) -> dict:
    """The scoring prompt (the default preset's system turn and question) as an OpenAI chat request."""
    preset = prompts.get_preset("qhawkeye")
    url = _data_url(image or _png())
    user = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": preset.question}]
    messages = [{"role": "system", "content": preset.system}, {"role": "user", "content": user}]
    return {"model": MODEL_ID, "messages": messages, **fields}


def _assert_error(status: int, body: dict, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"] and body["error"]["type"], body


def test_health_needs_no_key(server):
    status, body = _request(server, "/health", key=None)
    assert status == 200 and body["status"] == "ok" and body["model"] == MODEL_ID
    assert {"queue_depth", "batches_run", "rows_run", "batches_failed"} <= set(body)


@pytest.mark.parametrize("key", [None, "wrong-key"])
@pytest.mark.parametrize("path", ["/v1/models", "/v1/score", "/v1/chat/completions"])
def test_api_key_is_required(server, path, key):
    body = None if path == "/v1/models" else {}
    _assert_error(*_request(server, path, body, key=key), 401, "invalid_api_key")


def test_models_lists_the_served_id(server):
    status, body = _request(server, "/v1/models")
    assert status == 200 and body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [MODEL_ID] and body["data"][0]["object"] == "model"


def test_chat_completion_has_openai_shape(server):
    status, body = _request(server, "/v1/chat/completions", _chat_body(max_tokens=1000))
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["model"] == MODEL_ID
    assert body["id"].startswith("chatcmpl-") and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= TOKEN_LIMIT  # 1000 is capped
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    extra = choice["qhawkeye"]
    assert set(extra) == {"score", "parsed", "clipped", "error"}
    assert extra["parsed"] == (extra["score"] is not None) == (extra["error"] is None)
    if extra["parsed"]:
        assert 1 <= extra["score"] <= 5 and "<answer>" in choice["message"]["content"]


def test_greedy_chat_is_deterministic_and_matches_score(server):
    image = _png(colour=(90, 120, 30))
    first = _request(server, "/v1/chat/completions", _chat_body(image))[1]
    second = _request(server, "/v1/chat/completions", _chat_body(image, temperature=0))[1]
    text = first["choices"][0]["message"]["content"]
    assert text and second["choices"][0]["message"]["content"] == text
    # the same prompt, image and length through /v1/score gives the same answer and score
    status, scored = _request(server, "/v1/score", {"images": [{"data": base64.b64encode(image).decode()}]})
    assert status == 200 and scored["results"][0]["text"] == text
    assert scored["results"][0]["score"] == first["choices"][0]["qhawkeye"]["score"]


def test_chat_max_tokens_and_seeded_sampling(server):
    status, body = _request(server, "/v1/chat/completions", _chat_body(max_completion_tokens=3))
    assert status == 200 and body["usage"]["completion_tokens"] <= 3
    sampled = [
        _request(server, "/v1/chat/completions", _chat_body(temperature=1.0, top_p=0.9, seed=7))[1]
        for _ in range(2)
    ]
    texts = [b["choices"][0]["message"]["content"] for b in sampled]
    assert texts[0] and texts[0] == texts[1]


def _too_many_images() -> dict:
    body = _chat_body()
    part = body["messages"][1]["content"][0]
    body["messages"][1]["content"] = [part] * (LIMITS["--max-images-per-request"] + 1)
    return body


def _with_url(url: str) -> dict:
    body = _chat_body()
    body["messages"][1]["content"][0]["image_url"]["url"] = url
    return body


BAD_CHATS = [
    (_chat_body(n=2), 400, "n_not_supported"),
    (_chat_body(stream=True), 400, "stream_not_supported"),
    (_chat_body(stop=["</answer>"]), 400, "unsupported_parameter"),
    ({**_chat_body(), "model": "gpt-4o"}, 404, "model_not_found"),
    ({"model": MODEL_ID}, 400, "invalid_request"),
    ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, 400, "invalid_request"),
    (_chat_body(temperature=-1), 400, "invalid_request"),
    (_too_many_images(), 400, "too_many_images"),
    (_with_url("https://example.com/cat.png"), 400, "invalid_url"),
    (_with_url("data:image/png;base64,%%%not-base64"), 400, "invalid_base64"),
    (_with_url(_data_url(b"these bytes are no image")), 400, "invalid_image"),
    (_with_url("/etc/passwd"), 403, "path_outside_root"),
    (_with_url(_data_url(os.urandom(LIMITS["--max-image-bytes"] + 10))), 413, "image_too_large"),
    (_with_url(_data_url(_png((400, 400)))), 413, "too_many_pixels"),
    (_chat_body(messages=[{"role": "user", "content": "x" * 40_000}]), 413, "prompt_too_long"),
]


@pytest.mark.parametrize("body, status, code", BAD_CHATS, ids=[code for _, _, code in BAD_CHATS])
def test_chat_rejects_bad_requests(server, body, status, code):
    _assert_error(*_request(server, "/v1/chat/completions", body), status, code)


def _raw_post(server: Server, headers: dict, body=None) -> tuple[int, dict]:
    """POST with http.client, which can declare a length it does not send, or stream a chunked body."""
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
    try:
        conn.putrequest("POST", "/v1/chat/completions")
        for name, value in {"Authorization": f"Bearer {KEY}", **headers}.items():
            conn.putheader(name, value)
        conn.endheaders(body, encode_chunked=body is not None)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_malformed_and_oversized_bodies(server):
    _assert_error(*_request(server, "/v1/chat/completions", raw=b"{not json"), 400, "invalid_json")
    limit = LIMITS["--max-body-bytes"]
    # a declared length over the limit is refused from the header (sending that body would race the
    # server's early answer and close against the client's write: the test would be flaky)
    _assert_error(*_raw_post(server, {"Content-Length": str(limit + 1)}), 413, "body_too_large")
    # a chunked body without a length is counted as it arrives
    chunks = iter([b'{"messages": "', b"x" * (limit // 2), b"x" * (limit // 2), b'"}'])
    _assert_error(*_raw_post(server, {"Transfer-Encoding": "chunked"}, chunks), 413, "body_too_large")
    two_sources = {"images": [{"data": "", "path": "a.png"}]}
    _assert_error(*_request(server, "/v1/score", two_sources), 400, "invalid_request")


def test_score_two_images_one_unreadable(server):
    images = [
        {"id": "good", "data": base64.b64encode(_png()).decode()},
        {"id": "bad", "url": _data_url(b"junk")},
    ]
    status, body = _request(server, "/v1/score", {"images": images})
    assert status == 200, body
    assert body["model"] == MODEL_ID and body["prompt_preset"] == "qhawkeye"
    assert body["score_range"] == [1.0, 5.0] and body["lower_better"] is False
    assert body["decoding"]["mode"] == "greedy" and body["decoding"]["max_new_tokens"] == TOKEN_LIMIT
    good, bad = body["results"]
    assert good["id"] == "good" and good["status"] in ("ok", "parse_failure") and good["n_draws"] == 1
    assert bad["id"] == "bad" and bad["status"] == "unreadable" and bad["score"] is None
    assert "not an image" in bad["error"]


def test_an_over_elongated_image_is_one_unreadable_result_not_a_failed_request(server):
    images = [
        {"id": "good", "data": base64.b64encode(_png()).decode()},
        {"id": "strip", "data": base64.b64encode(_png(size=(4000, 10))).decode()},
    ]
    status, body = _request(server, "/v1/score", {"images": images})
    assert status == 200, body
    good, strip = body["results"]
    assert good["status"] in ("ok", "parse_failure")
    assert strip["status"] == "unreadable" and "aspect ratio" in strip["error"]
    status, body = _request(server, "/v1/chat/completions", _chat_body(_png(size=(4000, 10))))
    _assert_error(status, body, 400, "invalid_image")


def test_score_local_paths_only_under_root(server):
    good = [
        {"path": "a.png"},
        {"path": str(server.root / "sub" / "b.png")},
        {"url": "file://" + str(server.root / "a.png")},
    ]
    status, body = _request(server, "/v1/score", {"images": [*good, {"path": "missing.png"}]})
    assert status == 200, body
    assert [r["status"] != "unreadable" for r in body["results"]] == [True, True, True, False]
    assert body["results"][0]["id"] == "a.png" and "missing.png" in body["results"][3]["error"]
    for outside in ["/etc/passwd", "../outside/secret.png", "link.png", "file:///etc/hostname"]:
        item = {"url": outside} if outside.startswith("file:") else {"path": outside}
        _assert_error(*_request(server, "/v1/score", {"images": [item]}), 403, "path_outside_root")
    _assert_error(*_request(server, "/v1/score", {"images": [{"path": "a\x00.png"}]}), 400, "invalid_path")


def test_score_rejects_bad_base64_and_limits(server):
    status, body = _request(server, "/v1/score", {"images": [{"data": "not base64!"}]})
    _assert_error(status, body, 400, "invalid_base64")
    assert "base64" in body["error"]["message"] and "images[0]" in body["error"]["message"]
    huge = base64.b64encode(os.urandom(LIMITS["--max-image-bytes"] + 10)).decode()
    _assert_error(*_request(server, "/v1/score", {"images": [{"data": huge}]}), 413, "image_too_large")
    wide = base64.b64encode(_png((400, 400))).decode()
    _assert_error(*_request(server, "/v1/score", {"images": [{"data": wide}]}), 413, "too_many_pixels")
    many = [{"path": "a.png"}] * (LIMITS["--max-images-per-request"] + 1)
    _assert_error(*_request(server, "/v1/score", {"images": many}), 400, "too_many_images")


def test_concurrent_requests_are_batched(server):
    before = _request(server, "/health")[1]
    bodies = [_chat_body(_png(colour=(10 * n, 100, 50)), max_tokens=8) for n in range(20)]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda b: _request(server, "/v1/chat/completions", b), bodies))
    assert [status for status, _ in answers] == [200] * 20, answers
    after = _request(server, "/health")[1]
    rows, batches = after["rows_run"] - before["rows_run"], after["batches_run"] - before["batches_run"]
    assert rows == 20 and batches < rows, (rows, batches)
    assert after["queue_depth"] == 0 and after["batches_failed"] == before["batches_failed"]


# ------------------------------------------------------------------------------ in-process, no model


class _FakeScorer:
    """generate() echoes each request's text and raises when one asks for it."""

    def __init__(self, gate: threading.Event | None = None):
        self.gate, self.calls = gate, []

    def generate(self, requests):
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append(len(requests))
        if any(r == "boom" for r in requests):
            raise RuntimeError("boom")
        return [f"answer to {r}" for r in requests]


def test_worker_isolates_a_failing_request():
    from qhawkeye.serve.worker import BatchWorker, Job

    gate = threading.Event()
    scorer = _FakeScorer(gate)
    worker = BatchWorker(scorer, max_rows=8, wait_s=0.05, max_queue=8)
    worker.start()
    try:
        futures = [worker.submit(Job("chat", payload, 1)) for payload in ["a", "boom", "c"]]
        gate.set()
        assert futures[0].result(5) == "answer to a" and futures[2].result(5) == "answer to c"
        with pytest.raises(RuntimeError, match="boom"):
            futures[1].result(5)
        assert scorer.calls == [3, 1, 1, 1]  # one batch, then each request alone
        assert worker.submit(Job("chat", "d", 1)).result(5) == "answer to d"  # the worker keeps running
    finally:
        worker.stop(5)
    assert not worker.alive


def test_worker_queue_is_bounded():
    from qhawkeye.serve.worker import BatchWorker, Job, QueueFull, ShuttingDown

    worker = BatchWorker(_FakeScorer(), max_rows=8, wait_s=0.0, max_queue=2)  # not started: nothing drains
    worker.submit(Job("chat", "a", 1))
    worker.submit(Job("chat", "b", 1))
    with pytest.raises(QueueFull):
        worker.submit(Job("chat", "c", 1))
    worker.stop()
    with pytest.raises(ShuttingDown):
        worker.submit(Job("chat", "d", 1))


def test_importing_main_does_not_import_torch():
    # the CLI builds `qhawkeye serve`'s flags from this module: the model stack loads only in main()
    code = "import sys, qhawkeye.serve.main; print(sorted({'torch', 'transformers', 'fastapi'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_config_from_flags_and_environment(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    monkeypatch.setenv("QHAWKEYE_API_KEY", "from-env")
    args = parser.parse_args(
        ["--model", "tiny-format", "--port", "9001", "--mode", "sample", "--batch-wait-ms", "2.5"]
    )
    config = config_from_args(args)
    assert config.port == 9001 and config.batch_wait_ms == 2.5 and config.api_key == "from-env"
    assert config.scorer.model == "tiny-format" and config.scorer.mode == "sample"
    assert config.host == "127.0.0.1" and config.token_limit == config.scorer.max_new_tokens
    assert config_from_args(parser.parse_args(["--api-key", "flag"])).api_key == "flag"
    with pytest.raises(ValueError, match="max_batch_size"):
        ServeConfig(max_batch_size=0)
    with pytest.raises(ValueError, match="not a folder"):
        ServeConfig(image_root=str(tmp_path / "nope"))


def test_loopback_server_refuses_other_host_headers(server):
    """DNS rebinding: a page on another origin that resolves its name to 127.0.0.1 sends its own Host."""
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
    try:
        for host, expected in (("evil.example", 400), ("localhost", 200)):
            conn.request("GET", "/health", headers={"Host": host})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == expected, host
    finally:
        conn.close()


def test_network_bind_without_a_key_is_refused():
    with pytest.raises(ValueError, match="reachable from the network and no api_key"):
        ServeConfig(host="0.0.0.0")
    assert ServeConfig(host="0.0.0.0", api_key="k").api_key == "k"
    assert not ServeConfig(host="0.0.0.0", allow_unauthenticated_network=True).is_loopback
