"""Waiting for a server subprocess started by a test (qhawkeye serve, the review app)."""

from __future__ import annotations

import subprocess
import time
import urllib.request
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
