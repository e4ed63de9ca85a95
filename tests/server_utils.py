"""Waiting for a server subprocess started by a test (qhawkeye serve, the review app)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def wait_healthy(
    url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0, path: str = "/health"
) -> None:
    """Poll ``url + path`` until it answers 200; fail with the server's log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + path, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


@contextmanager
def qhawkeye_serve(args: list[str], log: Path) -> Iterator[str]:
    """``qhawkeye serve <args>`` on a free loopback port (one torch thread), healthy; yields its URL and stops
    it with SIGINT (killed after 30 s) on exit. Its output goes to ``log``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "qhawkeye.cli", "serve", *args, "--port", str(port)],
                                stdout=handle, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
