"""`qhawkeye train` end to end on the tiny model: logs, checkpoints with provenance, resume, refusal to overwrite."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from qhawkeye.cli import main
from qhawkeye.train.pao import gamma_schedule

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "configs" / "train" / "tiny_cpu.yaml")


def _args(out, data, steps, *extra):
    sets = [
        f"dataset_path={data}",
        f"output_dir={out}",
        f"max_steps={steps}",
        "save_steps=1",
        "max_completion_length=16",
        "pao_gamma_zero_epoch=1.0",
    ]
    return ["train", RECIPE, *[a for s in sets for a in ("--set", s)], *extra]


@pytest.mark.slow
def test_train_logs_checkpoints_and_resumes(tiny_model_dir, paired_dataset_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(out, paired_dataset_dir, 2)) == 0
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logs = [h for h in state["log_history"] if "loss" in h]
    assert len(logs) == 2
    for key in (
        "qhawkeye/kl_prcp",
        "qhawkeye/gamma_t",
        "qhawkeye/entropy_orig",
        "qhawkeye/entropy_deg",
        "qhawkeye/uado_weight",
        "qhawkeye/uado_uncertainty",
        "qhawkeye/parse_failure_rate",
    ):
        assert key in logs[-1], key
    # parameters moved
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    assert any(not (before[k] == after[k]).all() for k in before)
    info = json.loads((out / "checkpoint-1" / "qhawkeye_run.json").read_text())
    assert info["versions"]["trl"] == "1.16.0" and info["seed"] == 0 and info["global_step"] == 1
    assert info["train_dataset"]["num_rows"] == 8 and info["train_dataset"]["fingerprint"]
    assert info["config"]["training"]["loss_type"] == "grpo" and "commit" in info["git"]
    assert (out / "processor_config.json").is_file() and (out / "qhawkeye_run.json").is_file()

    # a second run into the same folder without --resume is refused, and nothing is touched
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    assert main(_args(out, paired_dataset_dir, 3)) == 1
    assert "already holds checkpoints" in capsys.readouterr().err
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime

    # resume continues from step 2 to 3; gamma_t follows the fractional epoch saved in the state
    assert main(_args(out, paired_dataset_dir, 3, "--resume")) == 0
    resumed = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert resumed["global_step"] == 3
    step3 = [h for h in resumed["log_history"] if "loss" in h][-1]
    assert step3["qhawkeye/gamma_t"] == pytest.approx(gamma_schedule(state["epoch"], 1e-4, 1.0))


@pytest.mark.slow
def test_quality_eval_callback_logs_correlations_and_the_result_scores(
    format_model_dir, paired_dataset_dir, tmp_path
):
    from qhawkeye.scoring import create_scorer

    out = tmp_path / "run"
    extra = [
        f"model_name_or_path={format_model_dir}",
        f"eval_dataset_path={paired_dataset_dir}",
        "quality_eval_steps=1",
        "quality_eval_mode=expected",
        "quality_eval_max_new_tokens=24",
        "quality_eval_max_samples=8",
        "scoring_mode=expected",
    ]
    assert main(_args(out, paired_dataset_dir, 2) + [a for s in extra for a in ("--set", s)]) == 0
    history = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    evals = [h for h in history if "quality_eval/srcc" in h]
    assert [h["step"] for h in evals] == [1, 2]
    for h in evals:
        assert h["quality_eval/n"] == pytest.approx(8 * (1 - h["quality_eval/parse_failure_rate"]))
        assert h["quality_eval/n_distinct"] == h["quality_eval/n"]  # expected-mode scores are continuous
        assert h["quality_eval/n"] >= 3 and -1 <= h["quality_eval/srcc"] <= 1  # from 8 held-out images
    # without --mode the trained folder is scored the way its run recorded (scoring_mode), and says so
    scorer = create_scorer(str(out), max_new_tokens=24)
    assert scorer.config.mode == "expected" and scorer.describe()["decoding"]["mode"] == "expected"
    assert create_scorer(str(out), mode="greedy", max_new_tokens=24).config.mode == "greedy"  # explicit wins
    assert create_scorer(str(format_model_dir), max_new_tokens=24).config.mode == "greedy"  # nothing recorded
    # the trained folder is a scorer model as it is
    result = create_scorer(str(out), mode="sample", num_samples=2, max_new_tokens=24).score(
        str(next(paired_dataset_dir.rglob("*.arrow")).parent / "missing.png")
    )
    assert result.status == "unreadable"


def test_quality_eval_metrics_match_scipy():
    from scipy import stats

    from qhawkeye.evaluate.callback import HeldOutItem, QualityEvalCallback
    from qhawkeye.scoring import ScorerConfig

    items = [HeldOutItem(str(n), "x.png", label) for n, label in enumerate([1.0, 2.0, 3.5, 4.0, 5.0])]
    callback = QualityEvalCallback(items, 1, ScorerConfig())
    scores = {"0": 1.5, "1": 2.5, "2": None, "3": 3.0, "4": 4.5}
    m = callback.metrics(scores)
    assert m["quality_eval/n"] == 4 and m["quality_eval/parse_failure_rate"] == pytest.approx(0.2)
    pred, gt = [1.5, 2.5, 3.0, 4.5], [1.0, 2.0, 4.0, 5.0]
    assert m["quality_eval/srcc"] == pytest.approx(stats.spearmanr(pred, gt)[0])
    assert m["quality_eval/plcc"] == pytest.approx(stats.pearsonr(pred, gt)[0])


def _weights(folder: Path, name: str) -> dict:
    return load_file(str(folder / name))


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resumed_run_reproduces_the_uninterrupted_run(tiny_model_dir, paired_dataset_dir, tmp_path, lora):
    # 2 images x num_iterations 2 = 4 steps an epoch: checkpoint-5 lies in the second epoch (the sampler's
    # order must be that epoch's) and inside a generation cycle (TRL's buffered completions must come back)
    extra = ["max_train_samples=2", "num_iterations=2", "save_steps=5", "learning_rate=0.001"]
    weights = "model.safetensors"
    if lora:
        extra += ["use_peft=true", "lora_r=4", "lora_alpha=8"]
        weights = "adapter_model.safetensors"
    sets = [a for s in extra for a in ("--set", s)]
    full = tmp_path / "uninterrupted"
    assert main(_args(full, paired_dataset_dir, 6) + sets) == 0
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-5", resumed / "checkpoint-5")
    assert main(_args(resumed, paired_dataset_dir, 6, "--resume") + sets) == 0

    start, end, again = (_weights(f, weights) for f in (full / "checkpoint-5", full, resumed))
    assert start.keys() == end.keys() == again.keys()
    assert any(not torch.equal(start[k], end[k]) for k in end)  # the last step changed the weights ...
    for k in end:  # ... and the resumed run made exactly the same change
        torch.testing.assert_close(again[k], end[k], rtol=0, atol=1e-6, msg=k)
