"""The foundation layer imports nothing above it: images, atomic writes, labels and the manifest schema load
without torch, the trainer, the scorer or the evaluator (so ingest and the review app stay light)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FOUNDATION = {
    "qhawkeye.images": set(),
    "qhawkeye.atomic": set(),
    "qhawkeye.parsing": set(),
    "qhawkeye.labels": {"qhawkeye.registry"},
    "qhawkeye.data.manifest": {"qhawkeye.atomic", "qhawkeye.data"},
    "qhawkeye.data.ingest": {
        "qhawkeye.images",
        "qhawkeye.labels",
        "qhawkeye.registry",
        "qhawkeye.atomic",
        "qhawkeye.data",
        "qhawkeye.data.manifest",
        "qhawkeye.provenance",
    },  # fmt: skip
}


@pytest.mark.parametrize("module", sorted(FOUNDATION))
def test_foundation_modules_import_nothing_above_them(module):
    code = (
        f"import sys, json; import {module}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('qhawkeye', 'torch', 'transformers')))))"
    )
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                           check=True).stdout))  # fmt: skip
    allowed = {"qhawkeye", module} | FOUNDATION[module] | {m for m in loaded if m.startswith("qhawkeye._")}
    assert loaded - allowed == set(), f"{module} pulls in {sorted(loaded - allowed)}"
