"""Validation correlation during training: SRCC/PLCC on a held-out set every N steps, logged with the rest.

The reward says whether the model writes parseable answers near its labels; whether training works is
answered by the correlation with human scores on images it never trained on. :class:`QualityEvalCallback`
scores a held-out set with the model being trained (same prompt and parser as :mod:`qhawkeye.scoring`) every
``quality_eval_steps`` optimizer steps and logs ``quality_eval/{srcc,plcc,krcc,n,parse_failure_rate}`` in
the same log row as that step's reward (or the next logged step's, when ``logging_steps`` does not divide
``quality_eval_steps``), so the numbers land in the trainer's log history, TensorBoard or W&B. Under data
parallelism each process scores every ``world_size``-th image and the predictions are gathered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image
from transformers import TrainerCallback

from qhawkeye.evaluate.metrics import compute_metrics
from qhawkeye.images import load_image
from qhawkeye.scoring.scorer import Scorer, ScorerConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldOutItem:
    id: str
    image: Image.Image | str
    label: float  # on [1, 5]


def held_out_items(config, data_args, max_samples: int) -> list[HeldOutItem]:
    """The quality-eval set: the benchmark card if ``quality_eval_benchmark`` is set, else the eval dataset."""
    if config.quality_eval_benchmark:
        from qhawkeye.labels import load_items, resolve_card

        card = resolve_card(config.quality_eval_benchmark, config.quality_eval_data_root)
        items = load_items(card, config.quality_eval_data_root)[:max_samples]
        return [HeldOutItem(i.id, str(i.image), i.label) for i in items]
    if not data_args.eval_dataset_path:
        raise ValueError(
            "quality_eval_steps > 0 needs a held-out set: set quality_eval_benchmark (a card) or eval_dataset_path"
        )
    from qhawkeye.data.training_set import load_training_dataset

    data = load_training_dataset(data_args.eval_dataset_path, image_column=data_args.image_column,
                                 score_column=data_args.score_column, max_samples=max_samples)  # fmt: skip
    return [HeldOutItem(str(n), row[data_args.image_column], float(row[data_args.score_column]))
            for n, row in enumerate(data)]  # fmt: skip


def scorer_config(config) -> ScorerConfig:
    return ScorerConfig(
        model="(training)",
        mode=config.quality_eval_mode,
        num_samples=config.quality_eval_num_samples,
        max_new_tokens=config.quality_eval_max_new_tokens,
        batch_size=config.quality_eval_batch_size,
        seed=config.seed,
    )


class QualityEvalCallback(TrainerCallback):
    """Scores ``items`` every ``every`` steps with the trained model; attach the trainer with :meth:`bind`."""

    def __init__(self, items: list[HeldOutItem], every: int, scoring: ScorerConfig):
        if len(items) < 3:
            raise ValueError(f"the quality-eval set has {len(items)} images; correlations need at least 3")
        self.items, self.every, self.scoring = items, every, scoring
        self.trainer = None

    def bind(self, trainer) -> QualityEvalCallback:
        self.trainer = trainer
        return self

    def on_step_end(self, args, state, control, **kwargs):
        # Into the trainer's metric buffer, not trainer.log(): the values then land in the same log row as the
        # step's reward (GRPOTrainer.log averages and clears that buffer), and an extra log() call here would
        # consume the step's metrics and stop the Trainer's own "loss" log for this step.
        if self.every and state.global_step % self.every == 0:
            for key, value in self.evaluate().items():
                self.trainer._metrics["train"][key].append(value)

    def evaluate(self) -> dict[str, float]:
        """Score this process's share, gather, and return the metrics (the same on every process)."""
        from accelerate.utils import gather_object
        from trl.models import unwrap_model_for_generation

        trainer = self.trainer
        accelerator = trainer.accelerator
        mine = self.items[accelerator.process_index :: accelerator.num_processes]
        model = trainer.model_wrapped
        was_training = model.training
        model.eval()
        try:
            with unwrap_model_for_generation(model, accelerator) as unwrapped:
                scorer = Scorer.from_loaded(unwrapped, trainer.processing_class, self.scoring, "(training)")
                images = [i.image if isinstance(i.image, Image.Image) else load_image(i.image) for i in mine]
                results = scorer.score_batch(images, [i.id for i in mine]) if mine else []
        finally:
            model.train(was_training)
        scores = {r.id: r.score for r in results}
        gathered = gather_object([scores]) if accelerator.num_processes > 1 else [scores]
        return self.metrics({k: v for part in gathered for k, v in part.items()})

    def metrics(self, scores: dict[str, float | None]) -> dict[str, float]:
        pairs = [(scores[i.id], i.label) for i in self.items if scores.get(i.id) is not None]
        pred, gt = (np.array(x, dtype=float) for x in zip(*pairs, strict=True)) if pairs else ([], [])
        m = compute_metrics(np.asarray(pred), np.asarray(gt))
        if m.nan_reason:
            logger.warning("quality eval: %s", m.nan_reason)
        return {
            "quality_eval/srcc": m.srcc,
            "quality_eval/plcc": m.plcc,
            "quality_eval/krcc": m.krcc,
            "quality_eval/n": float(m.n),
            "quality_eval/parse_failure_rate": 1 - len(pairs) / len(self.items),
            "quality_eval/n_distinct": float(m.n_distinct),
            "quality_eval/score_std": m.pred_std,
        }
