"""`qhawkeye demo`: a short Q-Hawkeye GRPO run on the embedded default, from nothing but the package.

Builds the tiny offline Qwen2.5-VL, writes a small synthetic paired training set (synthetic labels, not
human opinion scores), trains a few GRPO steps with UADO and PAO on, and returns the logged metrics.
Re-running reuses the dataset and resumes or skips finished training. (The full demo, with data pipeline,
warm start, evaluation and report, is tracked in issue 5.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from qhawkeye.provenance import write_json_atomic
from qhawkeye.train.config import parse_dict

logger = logging.getLogger(__name__)


def demo_config(out_dir: Path, steps: int) -> dict:
    """The demo's recipe: the tiny CPU settings, every algorithm hyperparameter explicit."""
    return {
        "model_name_or_path": "tiny-format",
        "dtype": "float32",
        "dataset_path": str(out_dir / "train_set"),
        "output_dir": str(out_dir / "model"),
        "use_cpu": True,
        "bf16": False,
        "seed": 0,
        "max_steps": steps,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "num_generations": 4,
        "max_completion_length": 48,
        "temperature": 1.0,
        "beta": 0.04,
        "loss_type": "grpo",
        "scale_rewards": "group",
        "epsilon": 0.2,
        "epsilon_high": 0.28,
        "num_iterations": 1,
        "learning_rate": 1e-4,
        "lr_scheduler_type": "constant",
        "reward_funcs": ["accuracy", "format"],
        "accuracy_tau": 0.30,
        "use_uado": True,
        "uado_alpha": 0.2,
        "use_pao": True,
        "pao_gamma": 1e-4,
        "pao_gamma_zero_epoch": 5.0,
        "pao_eta1": 1e-3,
        "pao_eta2": 0.0,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": max(1, steps // 2),
        "report_to": "none",
        "disable_tqdm": False,
    }


def run_demo(out_dir: str | Path = "runs/demo", steps: int = 6, n_images: int = 16):
    """Run the demo into ``out_dir``; returns the trainer's log history."""
    from qhawkeye.data.training_set import save_synthetic_training_set
    from qhawkeye.train.main import teardown_distributed, train

    out_dir = Path(out_dir)
    data_dir = out_dir / "train_set"
    if not data_dir.exists():
        save_synthetic_training_set(data_dir, n=n_images, seed=0)
    model_args, data_args, config = parse_dict(demo_config(out_dir, steps), source="demo")
    model_dir = Path(config.output_dir)
    log_file = model_dir / "trainer_log.json"  # written last: its presence means the demo finished
    if log_file.is_file():
        logger.info("demo model already trained in %s; delete the folder to train again", model_dir)
        return json.loads(log_file.read_text())
    resume = "last" if any(model_dir.glob("checkpoint-*")) else None
    try:
        trainer = train(model_args, data_args, config, resume=resume)
    finally:
        teardown_distributed()
    write_json_atomic(log_file, {"log_history": trainer.state.log_history})
    return {"log_history": trainer.state.log_history}
