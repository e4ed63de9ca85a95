"""The trainer learns: a short GRPO run on the easiest rung of the learnability ladder (exposure level, split by
photo) raises held-out SRCC well above the warm start's, and the same run on inverted labels ranks the other
way. The second half catches any misalignment between a completion, its image and the label its reward sees:
a trainer that rewarded completions against another row's label would not invert the ranking.

Scores are read in the deterministic expected mode. Seeded, fp32, a fixed thread count: the numbers are the
same from run to run on one machine; the margins below leave room for another CPU's float rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qhawkeye.evaluate.metrics import compute_metrics

STEPS = 40
WARM_STEPS = 60


def _set(root: Path) -> dict:
    from qhawkeye.sample_data.synthetic import make_synthetic_iqa

    return make_synthetic_iqa(root / "sample", types=("darken",), levels=4, labels="level", pristine=True,
                              photos=12, seed=0)  # fmt: skip


def _invert(sample: dict, root: Path) -> dict:
    """The same images with labels 6 - label (the pristine photo becomes the worst)."""
    rows = json.loads(Path(sample["train"]).read_text())
    folder = Path(sample["train"]).parent
    for row in rows:
        row["gt_score"] = 6.0 - row["gt_score"]
        row["images"] = [str(folder / row["images"][0])]
    path = root / "train_inverted.json"
    path.write_text(json.dumps(rows))
    return {**sample, "train": path}


def _srcc(model: Path, sample: dict) -> float:
    from qhawkeye.scoring import create_scorer

    folder = Path(sample["test"]).parent
    rows = json.loads(Path(sample["test"]).read_text())
    scorer = create_scorer(str(model), mode="expected", max_new_tokens=32, dtype="float32", batch_size=16)
    results = scorer.score_batch([str(folder / r["images"][0]) for r in rows])
    assert all(r.parsed for r in results), [r.error for r in results if not r.parsed]
    return compute_metrics([r.score for r in results], [r["gt_score"] for r in rows]).srcc


def _train(sample: dict, warm: Path, root: Path, name: str) -> Path:
    from qhawkeye.demo import DemoConfig, build_training_set, train_config
    from qhawkeye.train.config import parse_dict
    from qhawkeye.train.main import train

    cfg = DemoConfig(steps=STEPS, use_uado=False, use_pao=False)
    dataset = build_training_set(cfg, sample, root / name)
    values = {
        **train_config(cfg, dataset, root / name / "model", warm),
        "save_strategy": "no",
        "disable_tqdm": True,
    }
    train(*parse_dict(values))
    return root / name / "model"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_grpo_learns_exposure_and_follows_inverted_labels(qh_home, tmp_path):
    from qhawkeye.modeling import resolve_model_path
    from qhawkeye.scoring.scorer import load_image
    from qhawkeye.train.warmstart import warm_start_folder

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sample = _set(tmp_path)
        folder = Path(sample["train"]).parent
        images = [load_image(folder / r["images"][0]) for r in json.loads(Path(sample["train"]).read_text())]
        warm = warm_start_folder(resolve_model_path("tiny"), images, tmp_path / "warm", steps=WARM_STEPS)
        floor = _srcc(warm, sample)
        learnt = _srcc(_train(sample, warm, tmp_path, "true"), sample)
        inverted = _srcc(_train(_invert(sample, tmp_path), warm, tmp_path, "inverted"), sample)
    finally:
        torch.set_num_threads(threads)
    assert learnt > floor + 0.4, (floor, learnt)
    assert learnt > 0.5, (floor, learnt)
    assert inverted < learnt - 0.8, (learnt, inverted)
