"""Two data-parallel processes (torchrun, gloo on CPU) train with UADO and PAO; G=4 groups straddle both ranks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)  # generous: two processes on a loaded 2-core machine are slow, not stuck
def test_two_process_torchrun(format_model_dir, paired_dataset_dir, tmp_path, qh_home):
    out = tmp_path / "ddp"
    sets = [
        f"dataset_path={paired_dataset_dir}",
        f"output_dir={out}",
        "max_steps=2",
        "save_steps=2",
        "per_device_train_batch_size=2",  # 2 completions per rank: every group of 4 spans both ranks
        "max_completion_length=32",
        "model_name_or_path=tiny-format",  # writes parseable answers, so UADO sees real score spreads
        "ddp_find_unused_parameters=false",
        f"eval_dataset_path={paired_dataset_dir}",  # validation correlation, each rank scoring half the images
        "quality_eval_steps=2",
        "quality_eval_mode=sample",
        "quality_eval_num_samples=2",
        "quality_eval_max_new_tokens=24",
        "quality_eval_max_samples=8",
    ]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "qhawkeye.cli",
        "train",
        str(ROOT / "configs/train/tiny_cpu.yaml"),
    ]
    cmd += [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "QHAWKEYE_HOME": str(qh_home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stderr[-4000:]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    logs = [h for h in state["log_history"] if "loss" in h]
    assert len(logs) == 2 and all("qhawkeye/kl_prcp" in h and "qhawkeye/uado_weight" in h for h in logs)
    # groups of 4 span both ranks: a weight other than exp(-0.2) = 0.8187 comes from complete, gathered groups
    assert any(h["qhawkeye/parse_failure_rate"] < 1 for h in logs)
    assert all(0.8187 <= h["qhawkeye/uado_weight"] <= 1.0 for h in logs)
    assert (out / "model.safetensors").is_file()
    evals = [h for h in state["log_history"] if "quality_eval/n" in h]
    assert len(evals) == 1 and evals[0]["step"] == 2
    # predictions gathered from both ranks: n counts parsed answers over all 8 held-out images
    assert evals[0]["quality_eval/n"] == pytest.approx(8 * (1 - evals[0]["quality_eval/parse_failure_rate"]))
