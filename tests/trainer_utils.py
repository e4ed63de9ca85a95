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


def train_interrupt_resume(model_dir, data_dir, tmp_path, steps: int = 3, checkpoint: int = 2):
    """Train ``steps`` Q-Hawkeye steps (tiny_cpu recipe: UADO and PAO on) from ``model_dir``; then resume a copy
    of ``checkpoint-<checkpoint>`` to the same end. Asserts the last steps changed the weights and the resumed
    run ends with exactly the uninterrupted run's; returns the uninterrupted run's folder."""
    import shutil
    from pathlib import Path

    from safetensors.torch import load_file

    from qhawkeye.cli import main

    recipe = Path(__file__).resolve().parents[1] / "configs" / "train" / "tiny_cpu.yaml"

    def args(out, *extra):
        sets = [f"model_name_or_path={model_dir}", f"dataset_path={data_dir}", f"output_dir={out}",
                f"max_steps={steps}", f"save_steps={checkpoint}", "max_completion_length=12",
                "per_device_train_batch_size=4", "learning_rate=0.01", "max_train_samples=4"]  # fmt: skip
        return ["train", str(recipe), *[a for s in sets for a in ("--set", s)], *extra]

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    assert main(args(full)) == 0
    resumed.mkdir()
    shutil.copytree(full / f"checkpoint-{checkpoint}", resumed / f"checkpoint-{checkpoint}")
    assert main(args(resumed, "--resume")) == 0
    start, end, again = (
        load_file(str(f / "model.safetensors")) for f in (full / f"checkpoint-{checkpoint}", full, resumed)
    )
    assert any(not torch.equal(start[k], end[k]) for k in end)  # the last steps changed the weights ...
    for k in end:  # ... and the resumed run made exactly the same change
        torch.testing.assert_close(again[k], end[k], rtol=0, atol=1e-6, msg=k)
    return full
