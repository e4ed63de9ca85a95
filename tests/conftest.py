"""Shared fixtures: one tiny offline Qwen2.5-VL per test run, loaded through the real from_pretrained path."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Thread counts, set before torch is imported (here and in every subprocess a test starts, which inherits
# them). On a loaded machine OpenMP's default busy-waiting makes each parallel region spin against the other
# process and a test can run 10-50x slower; passive waiting yields the core instead. One thread: measured on
# the 2-core machine, idle, the trainer and Qwen3-VL tests took 72 s with 1 thread, 79 s with 2 passive
# threads and 60 s with 2 busy-waiting ones, which are the ones that collapse under load; the tiny models gain
# little from more. QHAWKEYE_TEST_THREADS overrides the count.
THREADS = os.environ.get("QHAWKEYE_TEST_THREADS") or "1"
os.environ.setdefault("OMP_NUM_THREADS", THREADS)
os.environ.setdefault("MKL_NUM_THREADS", THREADS)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("KMP_BLOCKTIME", "0")


def pytest_configure(config):
    import torch

    from qhawkeye import allocator

    allocator.tune()  # as the qhawkeye command does (subprocesses started through it tune themselves)

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.set_num_interop_threads(1)


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
    from qhawkeye.train.warmstart import ensure_format_model

    return ensure_format_model("tiny")
