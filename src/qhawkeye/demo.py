"""`qhawkeye demo`: the whole system on a CPU from nothing but the package, on a task it can learn.

Stages, each resumable (a rerun reuses what is done; delete a stage's folder to redo it):

1. ``sample/``: a synthetic IQA set from the bundled LIVE-Wild photos
   (:mod:`qhawkeye.sample_data.synthetic`), split into train and test by source photo. The default task,
   ``exposure``, darkens each photo at 4 levels and keeps the photo itself; the label is the level (5.0 for the
   photo, 1.0 for the darkest) -- **synthetic labels, not human opinion scores**, chosen because a
   no-reference model can see them (``ssim`` labels, fidelity to a source the model never sees, cannot be
   learnt without the reference: see benchmarks/RESULTS.md).
2. ``data/``: the real pipeline on the train split: ingest, degrade, filter (the cheap SSIM full-reference
   pre-filter), review (**auto-accepted in the demo**: every flagged pair is recorded as confirmed
   imperceptible by the reviewer ``demo-auto``), redegrade, build.
3. ``warm_start/``: the tiny Qwen2.5-VL after a format-only supervised warm start on the training images,
   whose target scores are drawn independently of the image: any correlation the trained model shows was
   learnt from the reward.
4. ``eval/warm_start/``: that model scored on the held-out test photos.
5. ``model/``: Q-Hawkeye GRPO training (UADO and PAO on) from the warm start, with the tiny learning recipe
   (``configs/train/tiny_learn.yaml``).
6. ``eval/trained/`` (and ``eval/trained_greedy/`` for the parse rate): the trained model on the same held-out
   images; then the paired bootstrap interval of the SRCC difference, one image scored, and
   ``report/README.md`` with the table, curves and scatter plots.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qhawkeye.provenance import json_safe, write_json_atomic

logger = logging.getLogger(__name__)


TASKS = {  # name -> (distortion types, label kind, pristine photos included)
    "exposure": (("darken",), "level", True),
    "blur": (("blur",), "level", True),
    "mixed": (("noise", "blur", "jpeg", "darken"), "level", True),
    "ssim": (("noise", "blur", "jpeg", "darken"), "ssim", False),
}


@dataclass
class DemoConfig:
    """The demo's knobs (the README's command uses the defaults)."""

    out: str = field(default="runs/demo", metadata={"help": "output folder (reused and resumed on a rerun)"})
    task: str = field(
        default="exposure",
        metadata={"help": "exposure, blur or mixed (labels = distortion level), or ssim (SSIM labels: not "
                  "learnable without the reference, kept to show it)"},
    )  # fmt: skip
    model: str = field(
        default="tiny", metadata={"help": "base model to warm-start and train (tiny or small)"}
    )
    warm_steps: int = field(default=150, metadata={"help": "format warm-start steps (8 images each)"})
    steps: int = field(default=150, metadata={"help": "GRPO optimizer steps"})
    batch_size: int = field(default=32, metadata={"help": "GRPO completions per step (images x 4 rollouts)"})
    photos: int | None = field(default=None, metadata={"help": "use only the first N bundled photos (smoke)"})
    eval_mode: str = field(
        default="expected", metadata={"help": "scoring mode of the evaluation: expected, greedy or sample"}
    )
    eval_samples: int = field(default=4, metadata={"help": "draws per test image when eval_mode is sample"})
    max_new_tokens: int = field(default=48, metadata={"help": "answer length limit, training and evaluation"})
    learning_rate: float = field(default=5e-4, metadata={"help": "GRPO learning rate"})
    seed: int = field(default=0, metadata={"help": "seed of the data split, degradations and training"})
    use_uado: bool = field(default=True, metadata={"help": "UADO on (the ablation switches it)"})
    use_pao: bool = field(default=True, metadata={"help": "PAO on (the ablation switches it)"})
    uado_alpha: float = field(default=0.2, metadata={"help": "UADO alpha (recipe 0.2)"})
    pao_gamma: float = field(default=1e-4, metadata={"help": "PAO gamma (recipe 1e-4)"})
    accuracy_out_of_range: str = field(
        default="zero",
        metadata={
            "help": "an answer outside [1, 5]: zero (no accuracy reward, the tiny recipe's) or clip (the SPEC's: "
            "clipped to the range, so a tiny model can learn to write 1911 for a 5; see RESULTS.md)"
        },
    )

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")
        if self.accuracy_out_of_range not in ("clip", "zero"):
            raise ValueError(
                f"accuracy_out_of_range must be clip or zero, got {self.accuracy_out_of_range!r}"
            )
        if self.eval_mode not in ("expected", "greedy", "sample"):
            raise ValueError(f"eval_mode must be expected, greedy or sample, got {self.eval_mode!r}")
        if min(self.warm_steps, self.steps, self.batch_size, self.max_new_tokens) < 1:
            raise ValueError("warm_steps, steps, batch_size and max_new_tokens must be >= 1")
        if self.batch_size % 4:
            raise ValueError(
                f"batch_size counts completions of 4 rollouts each: a multiple of 4, got {self.batch_size}"
            )


def train_config(cfg: DemoConfig, dataset: Path, output_dir: Path, model: Path) -> dict:
    """The demo's GRPO recipe: configs/train/tiny_learn.yaml's values (a test keeps them equal)."""
    return {
        "model_name_or_path": str(model), "dtype": "float32", "dataset_path": str(dataset),
        "output_dir": str(output_dir), "use_cpu": True, "bf16": False, "seed": cfg.seed,
        "max_steps": cfg.steps, "per_device_train_batch_size": cfg.batch_size, "gradient_accumulation_steps": 1,
        "num_generations": 4, "max_completion_length": cfg.max_new_tokens, "temperature": 1.0, "beta": 0.04,
        "loss_type": "grpo", "scale_rewards": "group", "epsilon": 0.2, "epsilon_high": 0.28,
        "num_iterations": 1, "learning_rate": cfg.learning_rate, "lr_scheduler_type": "constant",
        "max_grad_norm": 1.0, "reward_funcs": ["accuracy", "format"], "accuracy_tau": 0.30, "accuracy_out_of_range": cfg.accuracy_out_of_range,
        "scoring_mode": cfg.eval_mode,
        "use_uado": cfg.use_uado, "uado_alpha": cfg.uado_alpha,
        "use_pao": cfg.use_pao, "pao_gamma": cfg.pao_gamma, "pao_gamma_zero_epoch": 5.0,
        "pao_eta1": 1e-3 if cfg.use_pao else 0.0, "pao_eta2": 0.0,
        "logging_steps": max(1, min(5, cfg.steps // 20)), "save_strategy": "steps",
        "save_steps": max(1, cfg.steps // 4), "save_total_limit": 2, "report_to": "none", "disable_tqdm": False,
    }  # fmt: skip


def build_sample(cfg: DemoConfig, out: Path) -> dict:
    from qhawkeye.sample_data.synthetic import make_synthetic_iqa

    types, labels, pristine = TASKS[cfg.task]
    return make_synthetic_iqa(out / "sample", types=types, seed=cfg.seed, photos=cfg.photos, labels=labels,
                              pristine=pristine)  # fmt: skip


def warm_start(cfg: DemoConfig, sample: dict, out: Path) -> Path:
    """The format warm start on the training images (their labels are never read)."""
    from qhawkeye.images import load_image
    from qhawkeye.modeling import resolve_model_path
    from qhawkeye.train.warmstart import warm_start_folder

    root = Path(sample["train"]).parent
    images = [load_image(root / r["images"][0]) for r in json.loads(Path(sample["train"]).read_text())]
    return warm_start_folder(resolve_model_path(cfg.model), images, out / "warm_start", steps=cfg.warm_steps,
                             seed=cfg.seed)  # fmt: skip


def auto_review(filter_dir: Path, review_dir: Path) -> Path:
    """The demo's stand-in for a person: every flagged pair is confirmed imperceptible (said in the report)."""
    from qhawkeye.data.manifest import read_records, write_records

    if (review_dir / "manifest.jsonl").is_file():
        return review_dir
    records = []
    for r in read_records(filter_dir):
        if (r.get("filter") or {}).get("flagged"):
            r = {**r, "review": {"decision": "imperceptible", "votes": {"demo-auto": "imperceptible"}}}
        records.append(r)
    write_records(review_dir, records, "review", {"reviewer": "demo-auto (auto-accept)"}, source=filter_dir)
    return review_dir


def build_training_set(cfg: DemoConfig, sample: dict, out: Path) -> Path:
    """The data pipeline on the train split; returns the dataset folder."""
    from qhawkeye.data.build import run_build
    from qhawkeye.data.ingest import IngestConfig, run_ingest
    from qhawkeye.data.pairs import DegradeConfig, run_degrade, run_redegrade, second_pass_config
    from qhawkeye.data.vlm_filter import FilterConfig, run_filter

    data = out / "data"
    dataset = data / "train_set"
    if dataset.is_dir():
        return dataset
    if not (data / "ingest" / "manifest.jsonl").is_file():
        mos_range = tuple(sample.get("mos_range", (1.0, 5.0)))  # the synthetic labels are already on [1, 5]
        ingest = IngestConfig(labels=str(sample["train"]), mos_range=mos_range, name=sample.get("name", "demo-synthetic"),
                              data_root=sample.get("image_root"))  # fmt: skip
        run_ingest(ingest, data / "ingest")
    run_degrade(data / "ingest", data / "degrade", DegradeConfig(seed=cfg.seed))
    run_filter(data / "degrade", data / "filter", FilterConfig(mode="ssim"))
    auto_review(data / "filter", data / "review")
    run_redegrade(data / "review", data / "redegrade", second_pass_config(seed=cfg.seed), unreviewed="drop")
    summary = run_build([data / "redegrade"], dataset, unreviewed="drop")
    write_json_atomic(data / "build_summary.json", summary)
    return dataset


def evaluate_model(cfg: DemoConfig, model: str, card: Path, out: Path, mode: str | None = None) -> dict:
    from qhawkeye.evaluate.config import EvaluateConfig
    from qhawkeye.evaluate.run import evaluate
    from qhawkeye.scoring.config import ScorerConfig

    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    scoring = ScorerConfig(model=model, mode=mode or cfg.eval_mode, num_samples=cfg.eval_samples,
                           max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, dtype="float32")  # fmt: skip
    return evaluate(scoring, EvaluateConfig(benchmarks=[str(card)], out=str(out)))


def train_model(cfg: DemoConfig, dataset: Path, model_dir: Path, warm: Path) -> list[dict]:
    from qhawkeye.train.config import parse_dict
    from qhawkeye.train.main import teardown_distributed, train

    log_file = model_dir / "trainer_log.json"  # written last: its presence means training finished
    if log_file.is_file():
        return json.loads(log_file.read_text())["log_history"]
    model_args, data_args, config = parse_dict(train_config(cfg, dataset, model_dir, warm), source="demo")
    resume = "last" if any(model_dir.glob("checkpoint-*")) else None
    try:
        trainer = train(model_args, data_args, config, resume=resume)
    finally:
        teardown_distributed()
    write_json_atomic(log_file, {"log_history": trainer.state.log_history})
    return trainer.state.log_history


def compare(warm_dir: Path, trained_dir: Path, card_name: str, labels: dict[str, float]) -> dict:
    """SRCC/PLCC difference trained - warm start on the rows both parsed, with paired bootstrap intervals."""
    import numpy as np

    from qhawkeye.evaluate.metrics import paired_bootstrap_difference

    def scores(folder: Path) -> dict[str, float]:
        rows = (
            json.loads(x) for x in (folder / "predictions" / f"{card_name}.jsonl").read_text().splitlines()
        )
        return {r["id"]: r["score"] for r in rows if r["score"] is not None}

    warm, trained = scores(warm_dir), scores(trained_dir)
    ids = sorted(set(warm) & set(trained) & set(labels))
    a, b, gt = (np.array([d[i] for i in ids]) for d in (trained, warm, labels))
    out = {"n_common": len(ids)}
    for metric in ("srcc", "plcc"):
        diff, lo, hi = paired_bootstrap_difference(a, b, gt, metric=metric, n_resamples=2000)
        out[metric] = {"difference": diff, "ci95": [lo, hi]}
    return out


def run_demo(config: DemoConfig | None = None, progress: bool = True) -> dict:
    """Run (or resume) every stage into ``config.out``; returns the summary the report renders."""
    from qhawkeye.evaluate.demo_report import write_demo_report
    from qhawkeye.labels import load_card_file, load_items
    from qhawkeye.scoring import create_scorer

    cfg = config or DemoConfig()
    out = Path(cfg.out)
    timings: dict[str, float] = {}

    def timed(name, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        timings[name] = round(time.perf_counter() - start, 1)
        return result

    sample = timed("sample data", build_sample, cfg, out)
    dataset = timed("data pipeline", build_training_set, cfg, sample, out)
    warm_model = timed("warm start", warm_start, cfg, sample, out)
    card = Path(sample["card_test"])
    warm = timed(
        "evaluate warm start", evaluate_model, cfg, str(warm_model), card, out / "eval" / "warm_start"
    )
    history = timed("GRPO training", train_model, cfg, dataset, out / "model", warm_model)
    trained = timed(
        "evaluate trained", evaluate_model, cfg, str(out / "model"), card, out / "eval" / "trained"
    )
    greedy = timed("evaluate trained (greedy)", evaluate_model, cfg, str(out / "model"), card,
                   out / "eval" / "trained_greedy", "greedy")  # fmt: skip
    card_obj = load_card_file(card)
    items = load_items(card_obj)
    labels = {i.id: i.label for i in items}
    comparison = compare(out / "eval" / "warm_start", out / "eval" / "trained", card_obj.name, labels)
    example = create_scorer(str(out / "model"), mode=cfg.eval_mode, num_samples=cfg.eval_samples,
                            max_new_tokens=cfg.max_new_tokens, seed=cfg.seed).score(items[0].image, items[0].id)  # fmt: skip
    summary = {
        "config": asdict(cfg), "sample": {k: str(v) for k, v in sample.items()}, "card": card_obj.name,
        "build": json.loads((out / "data" / "build_summary.json").read_text()),
        "warm_start": warm["benchmarks"][card_obj.name], "trained": trained["benchmarks"][card_obj.name],
        "trained_greedy": greedy["benchmarks"][card_obj.name], "task": _task_text(cfg.task),
        "comparison": comparison, "example": {**example.to_dict(), "label": items[0].label,
                                              "image": str(items[0].image)},
        "timings_s": timings, "decoding": trained["decoding"],
    }  # fmt: skip
    summary = json_safe(summary)  # an undefined comparison (nothing parsed) is null, not NaN
    write_json_atomic(out / "summary.json", summary)
    write_demo_report(summary, history, out)
    return summary


def _task_text(task: str) -> str:
    types, labels, pristine = TASKS[task]
    if labels == "ssim":
        return (f"the bundled LIVE-Wild photos distorted by {', '.join(types)} at graded levels, each labelled by the SSIM "
                "of the distorted image against its original, mapped to [1, 5] (a no-reference model never sees "
                "that original: these labels are not learnable from the image alone)")  # fmt: skip
    return (
        f"the bundled LIVE-Wild photos distorted by {', '.join(types)} at 4 graded levels"
        + (" plus each undistorted photo" if pristine else "")
        + ", each labelled by its distortion level (5.0 undistorted, 1.0 strongest)"
    )
