"""Helpers for trainer tests: build a trainer on the tiny model and a fixed generation batch."""

from __future__ import annotations

import torch

from qhawkeye.data.training_set import load_training_dataset
from qhawkeye.modeling import load_model, load_processor
from qhawkeye.rewards import get_reward_funcs
from qhawkeye.train.config import parse_dict

BASE = dict(
    use_cpu=True,
    bf16=False,
    gradient_checkpointing=False,
    per_device_train_batch_size=4,
    num_generations=4,
    max_completion_length=16,
    logging_steps=1,
    report_to="none",
    save_strategy="no",
    seed=0,
    learning_rate=1e-3,
    lr_scheduler_type="constant",
    disable_tqdm=True,
)


def make_config(output_dir, **overrides):
    return parse_dict({**BASE, "output_dir": str(output_dir), **overrides})[2]


def make_trainer(model_dir, dataset_dir, config, trainer_cls=None):
    from qhawkeye.train.trainer import QHawkeyeGRPOTrainer

    trainer_cls = trainer_cls or QHawkeyeGRPOTrainer
    dataset = load_training_dataset(dataset_dir, degraded_column="degraded_image")
    return trainer_cls(
        model=load_model(model_dir, dtype="float32"),
        processing_class=load_processor(model_dir),
        reward_funcs=get_reward_funcs(config.reward_funcs, config.accuracy_tau, config.accuracy_out_of_range),
        args=config,
        train_dataset=dataset,
    )


def generation_rows(trainer, n_images: int):
    """Dataset rows as TRL's sampler hands them over: each image repeated G times, contiguous."""
    g = trainer.num_generations
    return [dict(trainer.train_dataset[i]) for i in range(n_images) for _ in range(g)]


def fixed_batch(trainer, n_images: int, seed: int = 0):
    trainer.model.train()
    torch.manual_seed(seed)
    return trainer._generate_and_score_completions(generation_rows(trainer, n_images))


def reference_logps_and_entropy(model, inputs, temperature: float = 1.0):
    """Per-token log-probs and entropies from full logits (independent of TRL's fused head)."""
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    t = inputs["completion_ids"].size(1)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        pixel_values=inputs["pixel_values"],
        image_grid_thw=inputs["image_grid_thw"],
        mm_token_type_ids=inputs.get("mm_token_type_ids"),
    )
    logits = out.logits[:, -t - 1 : -1].float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logps = logp_all.gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logps, entropy
