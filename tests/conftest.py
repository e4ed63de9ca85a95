"""Shared fixtures: one tiny offline Qwen2.5-VL per test run, loaded through the real from_pretrained path."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def qh_home(tmp_path_factory):
    """A private QHAWKEYE_HOME for the whole run (the tiny model is built there once)."""
    home = tmp_path_factory.mktemp("qhawkeye_home")
    old = os.environ.get("QHAWKEYE_HOME")
    os.environ["QHAWKEYE_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("QHAWKEYE_HOME", None)
    else:
        os.environ["QHAWKEYE_HOME"] = old


@pytest.fixture(scope="session")
def tiny_model_dir(qh_home):
    from qhawkeye.tiny import ensure_tiny_model

    return ensure_tiny_model("tiny")


@pytest.fixture(scope="session")
def paired_dataset_dir(tmp_path_factory):
    from qhawkeye.data.training_set import save_synthetic_training_set

    return save_synthetic_training_set(tmp_path_factory.mktemp("data") / "pairs", n=8, seed=0, size=112)


@pytest.fixture(scope="session")
def format_model_dir(qh_home):
    """The tiny model after the image-blind format warm start: it writes parseable, varied answers."""
    from qhawkeye.tiny import ensure_tiny_model

    return ensure_tiny_model("tiny", format_warm_start=True)
