"""benchmarks/learnability.py and benchmarks/ablation.py at toy sizes (--dry-run): every run is made, cached,
split by photo and tabulated; a rerun reuses the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, out: Path, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / script),
        "--dry-run",
        "--out",
        str(out),
        "--threads",
        "1",
        *args,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_ladder_and_ablation_dry_runs(qh_home, tmp_path):
    out = tmp_path / "ladder"
    _run("learnability.py", out, "--rungs", "exposure", "--seeds", "0", "--arms", "sft", "grpo")
    results = json.loads((out / "results.json").read_text())
    assert sorted(r["arm"] for r in results) == ["grpo", "sft", "warm"]
    for r in results:
        assert set(r["eval"]) == {"expected", "greedy"} and r["train_cpu_s"] >= 0
    table = (out / "table.md").read_text()
    assert "| exposure | grpo | 1 |" in table and "| exposure | sft | 1 |" in table
    sample = out / "exposure" / "data" / "sample"
    train, test = (json.loads((sample / f"{s}.json").read_text()) for s in ("train", "test"))
    assert not {r["source_photo"] for r in train} & {r["source_photo"] for r in test}
    assert {r["level"] for r in test} == {0, 1, 2, 3, 4}  # pristine photo included, labelled 5.0
    assert {r["gt_score"] for r in test if r["level"] == 0} == {5.0}

    # the ablation reuses the ladder's grpo run as its GRPO arm and adds the others
    mtime = (out / "exposure" / "grpo" / "seed0" / "result.json").stat().st_mtime_ns
    printed = _run("ablation.py", out, "--seeds", "0", "--settings", "recipe")
    assert (out / "exposure" / "grpo" / "seed0" / "result.json").stat().st_mtime_ns == mtime
    for arm in (
        "| recipe | GRPO | 1 |",
        "| recipe | +UADO | 1 |",
        "| recipe | +PAO | 1 |",
        "| recipe | +UADO+PAO | 1 |",
    ):
        assert arm in printed
    assert (out / "exposure" / "grpo-recipe+PAO" / "seed0" / "result.json").is_file()


def test_ablation_table_pairs_each_arm_with_its_own_policy_runs():
    """With --out-of-range every arm, plain GRPO included, is a run tagged by the policy; the table finds each."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ablation

    runs = ablation.runs("exposure", [0, 1], ["recipe", "strong"], "zero")
    tags = {r.tag for r in runs if r.arm != "warm"}
    assert tags == {"zero-GRPO"} | {
        f"zero-{s}{a}" for s in ("recipe", "strong") for a in ("+UADO", "+PAO", "+UADO+PAO")
    }
    assert all(dict(r.overrides)["accuracy_out_of_range"] == "zero" for r in runs if r.arm != "warm")
    results = [
        {"arm": r.arm, "tag": r.tag, "seed": r.seed,
         "eval": {"expected": {"srcc": 0.5 + 0.1 * r.seed + 0.01 * len(r.tag)}, "greedy": {"srcc": None}}}
        for r in runs if r.arm != "warm"
    ]  # fmt: skip
    table = ablation.table(results, "exposure", [0, 1], ["recipe", "strong"], "zero")
    for setting in ("recipe", "strong"):
        for arm in ("GRPO", "+UADO", "+PAO", "+UADO+PAO"):
            assert f"| {setting} | {arm} | 2 |" in table, table
    # the paired difference of +UADO from GRPO: the same for both seeds (0.01 x tag length difference)
    diff = 0.01 * (len("zero-recipe+UADO") - len("zero-GRPO"))
    assert f"{diff:+.3f} [{diff:+.3f}, {diff:+.3f}]" in table.splitlines()[3]
