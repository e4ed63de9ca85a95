"""`qhawkeye evaluate` on real human-rated images (LIVE-Wild subset), resumable, NaN-safe, data-parallel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from qhawkeye import cli
from qhawkeye.evaluate.run import EvaluateConfig, benchmark_metrics
from qhawkeye.labels import BenchmarkCard, BenchmarkItem
from qhawkeye.provenance import json_safe

ROOT = Path(__file__).resolve().parents[1]
LIVEC = ROOT.parent / "shared" / "data" / "livec"
CARD = ROOT / "configs" / "benchmarks" / "livec_700.yaml"
needs_livec = pytest.mark.skipif(
    not (LIVEC / "meta.json").is_file(), reason="../shared/data/livec not present"
)


def _strict_json(path: Path):
    def refuse(name):
        raise ValueError(f"{path} holds {name}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _args(out, model, *extra):
    return ["evaluate", "--benchmarks", str(CARD), "--data-root", str(LIVEC), "--out", str(out), "--model",
            str(model), "--mode", "sample", "--num-samples", "2", "--max-new-tokens", "32", "--bootstrap", "200",
            "--quiet", *extra]  # fmt: skip


@needs_livec
@pytest.mark.slow
def test_evaluate_livewild_subset_end_to_end(format_model_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli.main(_args(out, format_model_dir, "--limit", "24")) == 0
    results = _strict_json(out / "results.json")
    bench = results["benchmarks"]["livec_700"]
    assert bench["n_total"] == 24 and bench["n"] + bench["parse_failures"] + bench["unreadable"] == 24
    assert results["decoding"]["mode"] == "sample" and results["prompt_preset"] == "qhawkeye"
    assert results["versions"]["transformers"] and "git_commit" in results

    # recompute SRCC/PLCC from the prediction file and the raw 0-100 MOS: labels are 1 + 4 * mos / 100
    meta = {str(r["id"]): r["gt_score"] for r in json.loads((LIVEC / "meta.json").read_text())}
    rows = [json.loads(line) for line in (out / "predictions" / "livec_700.jsonl").read_text().splitlines()]
    parsed = [(r["score"], 1 + 4 * meta[r["id"]] / 100) for r in rows if r["score"] is not None]
    pred, gt = np.array(parsed).T
    assert bench["n"] == len(parsed) >= 3
    assert bench["metrics"]["n_distinct"] == len(set(pred.tolist()))
    if len(set(pred.tolist())) == 1:  # a format-only model may give every parsed image the same score
        assert bench["metrics"]["srcc"] is None and "constant" in bench["metrics"]["nan_reason"]
    else:
        assert bench["metrics"]["srcc"] == pytest.approx(stats.spearmanr(pred, gt)[0])
        assert bench["metrics"]["plcc"] == pytest.approx(stats.pearsonr(pred, gt)[0])
        lo, hi = bench["ci95"]["srcc"]
        assert lo <= bench["metrics"]["srcc"] <= hi
    assert "| livec_700 |" in (out / "results.md").read_text()
    assert (out / "plots" / "livec_700.png").stat().st_size > 1000
    assert "livec_700" in capsys.readouterr().out

    # a rerun with more rows scores only the new ones; the first 24 predictions are kept as they were
    before = (out / "predictions" / "livec_700.jsonl").read_text()
    assert cli.main(_args(out, format_model_dir, "--limit", "30")) == 0
    after = (out / "predictions" / "livec_700.jsonl").read_text()
    assert after.startswith(before) and len(after.splitlines()) == 30
    assert _strict_json(out / "results.json")["benchmarks"]["livec_700"]["n_total"] == 30


def _card(tmp_path) -> BenchmarkCard:
    return BenchmarkCard(name="toy", label_file=str(tmp_path / "x.json"), image_root=str(tmp_path),
                         format="deqa", mos_range=(1.0, 5.0), lower_better=False)  # fmt: skip


def test_constant_predictions_give_nan_with_a_reason_not_a_crash(tmp_path):
    items = [
        BenchmarkItem(str(n), tmp_path / f"{n}.png", g, g, None) for n, g in enumerate([1.0, 2.0, 4.0, 5.0])
    ]
    rows = {str(n): {"score": 3.0, "status": "ok"} for n in range(4)}
    entry, pred, gt = benchmark_metrics(_card(tmp_path), items, rows, EvaluateConfig(bootstrap=50))
    assert entry["n"] == 4 and np.isnan(
        entry["metrics"]["srcc"] if entry["metrics"]["srcc"] is not None else np.nan
    )
    assert "constant prediction" in entry["metrics"]["nan_reason"]
    json.dumps(json_safe(entry), allow_nan=False)  # writable as strict JSON


def test_per_distortion_type_tables_and_parse_failures(tmp_path):
    labels = [1.0, 2.0, 3.0, 4.0, 5.0, 1.5, 2.5, 3.5, 4.5, 2.0]
    items = [BenchmarkItem(str(n), tmp_path / f"{n}.png", g, g, "blur" if n < 5 else "noise")
             for n, g in enumerate(labels)]  # fmt: skip
    rows = {str(n): {"score": g + 0.1 * (-1) ** n, "status": "ok"} for n, g in enumerate(labels)}
    rows["9"] = {"score": None, "status": "parse_failure"}
    entry, _, _ = benchmark_metrics(_card(tmp_path), items, rows, EvaluateConfig(bootstrap=0))
    assert entry["parse_failures"] == 1 and entry["n"] == 9 and entry["n_total"] == 10
    assert set(entry["by_type"]) == {"blur", "noise"} and entry["by_type"]["noise"]["n"] == 4
    assert entry["by_type"]["blur"]["srcc"] == pytest.approx(stats.spearmanr(
        [rows[str(n)]["score"] for n in range(5)], labels[:5])[0])  # fmt: skip
    missing = dict(rows)
    del missing["3"]
    with pytest.raises(RuntimeError, match="no prediction"):
        benchmark_metrics(_card(tmp_path), items, missing, EvaluateConfig(bootstrap=0))


@needs_livec
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_process_evaluation_shards_and_merges(format_model_dir, tmp_path, qh_home):
    out = tmp_path / "ddp_eval"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "qhawkeye.cli", *_args(out, format_model_dir, "--limit", "10")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "QHAWKEYE_HOME": str(qh_home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=220)
    assert proc.returncode == 0, proc.stderr[-4000:]
    shards = [out / "predictions" / f"livec_700.rank{r}-of-2.jsonl" for r in (0, 1)]
    ids = [[json.loads(line)["id"] for line in s.read_text().splitlines()] for s in shards]
    assert len(ids[0]) == len(ids[1]) == 5 and not set(ids[0]) & set(ids[1])
    results = _strict_json(out / "results.json")
    assert results["processes"] == 2 and results["benchmarks"]["livec_700"]["n_total"] == 10
    merged = _strict_json(out / results["benchmarks"]["livec_700"]["predictions"])["predictions"]
    assert sorted(r["id"] for r in merged) == sorted(ids[0] + ids[1])
