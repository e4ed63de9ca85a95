"""`qhawkeye train CONFIG.yaml`: parse the recipe, build model/data/trainer, train, save, resume.

Works the same under ``accelerate launch`` and ``torchrun`` (one process per device). Every checkpoint gets a
``qhawkeye_run.json`` beside it: the resolved config, library versions, git commit, seed and the training
set's fingerprint. ``--resume`` continues from the last checkpoint in ``output_dir`` (or a named one);
without it, an ``output_dir`` that already holds checkpoints is refused rather than overwritten.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from qhawkeye import provenance
from qhawkeye.data.training_set import load_training_dataset
from qhawkeye.evaluate.callback import QualityEvalCallback, held_out_items
from qhawkeye.evaluate.callback import scorer_config as quality_scorer_config
from qhawkeye.modeling import load_model, load_processor, resolve_model_path
from qhawkeye.rewards import get_reward_funcs
from qhawkeye.train.config import DataArguments, ModelArguments, QHawkeyeConfig, parse_config
from qhawkeye.train.trainer import QHawkeyeGRPOTrainer

logger = logging.getLogger(__name__)
RUN_INFO = "qhawkeye_run.json"


class RunInfoCallback(TrainerCallback):
    """Writes the run's provenance into every checkpoint folder as it is saved."""

    def __init__(self, info: dict):
        self.info = info

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            provenance.write_json_atomic(folder / RUN_INFO, {**self.info, "global_step": state.global_step})


def run_info(model_args, data_args, config, train_dataset) -> dict:
    return {
        "config": {
            "model": dataclasses.asdict(model_args),
            "data": dataclasses.asdict(data_args),
            "training": config.to_dict(),
        },
        "versions": provenance.library_versions(),
        "git": provenance.git_commit(),
        "seed": config.seed,
        "train_dataset": provenance.dataset_fingerprint(train_dataset, data_args.dataset_path),
    }


def build_model(model_args: ModelArguments):
    """Load processor and model from a local folder; freeze the vision tower if asked."""
    path = resolve_model_path(model_args.model_name_or_path)
    processor = load_processor(path, model_args.min_pixels, model_args.max_pixels)
    model = load_model(path, dtype=model_args.dtype, attn_implementation=model_args.attn_implementation)
    if model_args.freeze_vision_tower:
        model.model.visual.requires_grad_(False)
    return model, processor


def peft_config(model_args: ModelArguments):
    """LoRA on the language model's linear layers only (the vision tower reuses the same module names)."""
    if not model_args.use_peft:
        return None
    from peft import LoraConfig

    names = "|".join(model_args.lora_target_modules)
    return LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=rf"^(?!.*visual).*\.({names})$",
        task_type="CAUSAL_LM",
    )


def resolve_resume(config: QHawkeyeConfig, resume: str | bool | None) -> str | None:
    """The checkpoint to resume from, or None; refuses to train over existing checkpoints by accident."""
    last = get_last_checkpoint(config.output_dir) if os.path.isdir(config.output_dir) else None
    if resume in (None, False):
        if last is not None:
            raise FileExistsError(
                f"{config.output_dir} already holds checkpoints (last: {last}). Pass --resume to continue the "
                "run, or choose another output_dir."
            )
        return None
    if resume is True or resume == "last":
        if last is None:
            raise FileNotFoundError(f"--resume: no checkpoint-* folder in {config.output_dir}")
        return last
    if not Path(resume).is_dir():
        raise FileNotFoundError(f"--resume: checkpoint folder {resume!r} not found")
    return str(resume)


def train(model_args: ModelArguments, data_args: DataArguments, config: QHawkeyeConfig, resume=None):
    """Build everything and train; returns the trainer (its state holds the log history)."""
    if data_args.dataset_path is None:
        raise ValueError(
            "dataset_path is not set: point it to a dataset folder written by `qhawkeye data build`"
        )
    checkpoint = resolve_resume(config, resume)
    degraded = config.degraded_image_column if config.use_pao else None
    load = dict(
        split=data_args.dataset_split,
        image_column=data_args.image_column,
        score_column=data_args.score_column,
        degraded_column=degraded,
        check_images=data_args.check_images,
    )
    train_dataset = load_training_dataset(
        data_args.dataset_path, max_samples=data_args.max_train_samples, **load
    )
    eval_dataset = None
    if data_args.eval_dataset_path:
        eval_dataset = load_training_dataset(data_args.eval_dataset_path, **{**load, "degraded_column": None})
    model, processor = build_model(model_args)
    trainer = QHawkeyeGRPOTrainer(
        model=model,
        processing_class=processor,
        reward_funcs=get_reward_funcs(config.reward_funcs, config.accuracy_tau, config.accuracy_out_of_range),
        args=config,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        peft_config=peft_config(model_args),
        callbacks=[RunInfoCallback(run_info(model_args, data_args, config, train_dataset))],
    )
    if config.quality_eval_steps:
        items = held_out_items(config, data_args, config.quality_eval_max_samples)
        callback = QualityEvalCallback(items, config.quality_eval_steps, quality_scorer_config(config))
        trainer.add_callback(callback.bind(trainer))
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(config.output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(config.output_dir)
        info = {
            **run_info(model_args, data_args, config, train_dataset),
            "global_step": trainer.state.global_step,
        }
        provenance.write_json_atomic(Path(config.output_dir) / RUN_INFO, info)
    return trainer


def teardown_distributed() -> None:
    """Barrier then destroy the process group: avoids gloo's exit-time aborts (FEASIBILITY §5)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def main(config_path: str, overrides: dict | None = None, resume=None):
    """Entry point of `qhawkeye train`."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    model_args, data_args, config = parse_config(config_path, overrides)
    try:
        return train(model_args, data_args, config, resume=resume)
    finally:
        teardown_distributed()
