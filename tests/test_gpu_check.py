"""benchmarks/gpu/run.sh in its CPU dry-run mode: the whole prepared GPU check runs (reduced sizes) and writes
its figures, so a session lent a device spends its minutes measuring, not debugging."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_check_dry_run(tmp_path, qh_home):
    import sys

    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks/gpu/run.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=580)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["dry_run"] is True
    assert result["processor"] == {"checked": False, "why": "torchvision does not import here"}
    assert set(result["shapes"]) == {"qwen2_5_vl_7b", "qwen3_vl_4b"}
    for shape, part in result["shapes"].items():
        train = part["train"]
        assert set(train) == {"TRL GRPOTrainer (stock)", "qhawkeye, UADO + PAO (recipe values)"}, shape
        for arm in train.values():
            assert len(arm["step_s"]) == 2 and arm["median_s"] > 0 and arm["completion_tokens"] == [8.0, 8.0]
        scoring = part["scoring"]
        assert scoring["one image per generate call"]["images_per_s"] > 0
        assert scoring["Scorer, batch 4"]["ratio"] > 0
        assert (
            scoring["decode"]["tokens_per_s"] > 0 and scoring["decode"]["bound_tokens_per_s"] is None
        )  # no HBM
    table = (tmp_path / "gpu_check.md").read_text()
    assert "### qwen2_5_vl_7b" in table and "### qwen3_vl_4b" in table
    assert table.count("| qhawkeye, UADO + PAO (recipe values) |") == 2 and "Decode at batch 1" in table
