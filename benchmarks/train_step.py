"""Optimizer-step time of QHawkeyeGRPOTrainer (UADO + PAO) against plain TRL GRPO, same model and batch.

    python benchmarks/train_step.py [--rounds 5] [--steps 6] [--tokens 128] [--model tiny]

Arms run interleaved (stock, ours, ours with gradient through the degraded branch, stock, ...), each a
fresh short run from the same seed, so the rollouts are the same in every arm. The step time is TRL's own
``step_time`` metric (generation, rewards, log-prob forwards, backward, optimizer), first step dropped as
warm-up. Prints a markdown table of medians and ratios against the stock arm of the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def arms():
    from trl import GRPOTrainer

    from qhawkeye.train.trainer import QHawkeyeGRPOTrainer

    return {
        "TRL GRPOTrainer (stock)": (GRPOTrainer, dict(use_uado=False, use_pao=False)),
        "qhawkeye, UADO + PAO (default: degraded no-grad once per generation batch)": (
            QHawkeyeGRPOTrainer,
            dict(use_uado=True, use_pao=True),
        ),
        "qhawkeye, UADO + PAO, gradient through degraded branch (eta2 on)": (
            QHawkeyeGRPOTrainer,
            dict(use_uado=True, use_pao=True, pao_grad_through_degraded=True, pao_eta2=1e-3),
        ),
    }


def one_run(trainer_cls, extra, model_dir, data_dir, steps, tokens, batch, ga) -> list[float]:
    from trainer_utils import make_config, make_trainer

    with tempfile.TemporaryDirectory() as out:
        config = make_config(
            out,
            max_steps=steps,
            max_completion_length=tokens,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=ga,
            beta=0.04,
            **extra,
        )
        trainer = make_trainer(model_dir, data_dir, config, trainer_cls)
        trainer.train()
        times = [h["step_time"] for h in trainer.state.log_history if "step_time" in h]
    return times[1:]  # first step: warm-up


def main() -> None:
    from qhawkeye import allocator

    allocator.tune()  # as the qhawkeye command does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=128, help="max_completion_length")
    parser.add_argument("--batch", type=int, default=8, help="completions per device (G = 4)")
    parser.add_argument("--ga", type=int, default=1, help="gradient accumulation steps")
    parser.add_argument("--model", default="tiny", choices=["tiny", "small"])
    args = parser.parse_args()

    import torch

    from qhawkeye.data.training_set import save_synthetic_training_set
    from qhawkeye.tiny import ensure_tiny_model

    model_dir = ensure_tiny_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = save_synthetic_training_set(Path(tmp) / "pairs", n=16, size=112)
        results = {name: [] for name in arms()}
        start = time.perf_counter()
        for _ in range(args.rounds):
            for name, (cls, extra) in arms().items():
                results[name] += one_run(
                    cls, extra, model_dir, data_dir, args.steps, args.tokens, args.batch, args.ga
                )
    base = statistics.median(results["TRL GRPOTrainer (stock)"])
    print(
        f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"model {args.model}, G=4, {args.batch} completions/step, {args.tokens} max completion tokens, GA={args.ga}, "
        f"{args.rounds} interleaved rounds x {args.steps - 1} timed steps ({time.perf_counter() - start:.0f} s)\n"
    )
    print("| arm | median s/step | IQR s | ratio vs stock |")
    print("|---|---|---|---|")
    for name, times in results.items():
        q = statistics.quantiles(times, n=4)
        print(
            f"| {name} | {statistics.median(times):.3f} | {q[0]:.3f}-{q[2]:.3f} | {statistics.median(times) / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
