"""The one place that decides where qhawkeye keeps files it makes for itself.

Everything a user names (datasets, output folders, checkpoints) comes from arguments; only the files the
package builds on its own (the tiny offline model) live under ``QHAWKEYE_HOME``, which defaults to
``~/.cache/qhawkeye``.
"""

from __future__ import annotations

import os
from pathlib import Path

TINY_MODELS = {
    "tiny": ("tiny", False),
    "tiny-format": ("tiny", True),
    "small": ("small", False),
    "small-format": ("small", True),
}
"""Model names that mean an embedded tiny Qwen2.5-VL built offline on first use: name -> (variant, whether it
gets the image-blind format warm start of :mod:`qhawkeye.train.warmstart`). ``tiny`` is the default."""


def home() -> Path:
    """Root folder for files qhawkeye builds itself (``$QHAWKEYE_HOME`` or ``~/.cache/qhawkeye``)."""
    root = os.environ.get("QHAWKEYE_HOME")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "qhawkeye"


def tiny_model_dir(variant: str = "tiny") -> Path:
    """Folder of the embedded tiny model of the given variant (built by :mod:`qhawkeye.tiny`)."""
    return home() / "models" / f"tiny-qwen2_5_vl-{variant}"
