"""A shortened `qhawkeye demo`: every artefact exists and parses, and the SRCC is computed from its own predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from qhawkeye import cli
from qhawkeye.labels import load_card_file, load_items


def _strict(path):
    def refuse(name):
        raise ValueError(f"{path}: {name} is not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.slow
@pytest.mark.timeout(280)
def test_short_demo_writes_every_artefact_and_resumes(qh_home, tmp_path, capsys):
    out = tmp_path / "demo"
    args = [
        "demo",
        "--out",
        str(out),
        "--photos",
        "8",
        "--steps",
        "2",
        "--warm-steps",
        "20",
        "--batch-size",
        "8",
    ]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "Q-Hawkeye GRPO" in printed and "report/README.md" in printed

    summary = _strict(out / "summary.json")
    report = (out / "report" / "README.md").read_text()
    for needle in (
        "synthetic",
        "auto-accepted",
        "| warm start (format only) |",
        "| Q-Hawkeye GRPO |",
        "distortion level",
        "expected mode",
    ):
        assert needle in report
    for png in ("curves.png", "scatter_warm_start.png", "scatter_trained.png"):
        with Image.open(out / "report" / png) as img:
            assert img.size[0] > 100
    for name in ("warm_start", "trained"):
        assert _strict(out / "eval" / name / "results.json")["decoding"]["mode"] == "expected"
    assert _strict(out / "eval" / "trained_greedy" / "results.json")["decoding"]["mode"] == "greedy"
    assert _strict(out / "warm_start" / "warm_start.json")["steps"] == 20
    assert (out / "data" / "train_set" / "dataset_info.json").is_file()

    # the trained model's SRCC is recomputed from its own prediction file and the card's labels
    card = load_card_file(summary["sample"]["card_test"])
    labels = {item.id: item.label for item in load_items(card)}
    rows = [json.loads(x) for x in (out / "eval" / "trained" / "predictions" / f"{card.name}.jsonl").open()]
    pairs = [(r["score"], labels[r["id"]]) for r in rows if r["score"] is not None]
    trained = summary["trained"]
    assert trained["n"] == len(pairs) and trained["n_total"] == len(labels) == 10  # 2 test photos x 5 levels
    if trained["n"] >= 3 and np.std([p for p, _ in pairs]) > 0:
        assert trained["metrics"]["srcc"] == pytest.approx(stats.spearmanr(*zip(*pairs, strict=True))[0])
    assert summary["comparison"]["n_common"] <= min(trained["n"], summary["warm_start"]["n"])
    # the train and test photos do not overlap
    train_rows = json.loads((out / "sample" / "train.json").read_text())
    test_rows = json.loads((out / "sample" / "test.json").read_text())
    assert not {r["source_photo"] for r in train_rows} & {r["source_photo"] for r in test_rows}

    # a second run reuses every stage: the trained model is not touched
    log = out / "model" / "trainer_log.json"
    mtime = log.stat().st_mtime_ns
    assert cli.main(args) == 0
    assert log.stat().st_mtime_ns == mtime
    assert _strict(out / "summary.json")["trained"] == trained
