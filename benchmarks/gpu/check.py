"""The prepared GPU check: the real Qwen2.5-VL-7B shape, random bf16 weights, the real tokenizer and processor.

    python benchmarks/gpu/check.py --out DIR            # on a GPU (see run.sh: installs the carried wheels)
    python benchmarks/gpu/check.py --dry-run --out DIR  # on a CPU: reduced sizes, the same code path

What it measures, into ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` (copy the table into
benchmarks/RESULTS.md):

1. **Training step**: Q-Hawkeye GRPO (UADO + PAO, the recipe's values) against plain TRL GRPO on the same
   rollouts: each arm starts from an identical freshly built model (same seed) with LoRA on the language
   model (r 16) and the vision tower frozen, so it fits one GPU; G = 4, 2 images per step, images at the
   recipe's pixel budget (``max_pixels`` 786,432), completions capped at ``--tokens``; bf16, gradient
   checkpointing. Median of TRL's ``step_time`` over the steps after the first, and peak GPU memory.
2. **Scoring throughput**: the batched Scorer (greedy) against one image per ``generate`` call, same images,
   same token limit (random weights never emit an end token, so every answer is exactly ``--tokens`` long).
3. **Decode speed**: tokens/s of one sequence at batch 1, against the memory-bandwidth limit (weight bytes /
   HBM bandwidth per decode step; bandwidth measured here by a device-to-device copy).

Both shapes run in turn: Qwen2.5-VL-7B (the vendored real configuration, tokenizer, processor settings and
generation config) and Qwen3-VL-4B (sizes from its published config, :data:`qhawkeye.shaped.QWEN3_VL_4B`; the real Qwen2
vocabulary; Qwen3-VL's 16-pixel patches). Random weights say nothing about quality; they make the shapes,
memory and speed real.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "vendor" / "qwen2_5_vl_7b_instruct"
RECIPE = ROOT / "configs" / "train" / "qwen2_5_vl_7b.yaml"
SHAPES = ("qwen2_5_vl_7b", "qwen3_vl_4b")


def settings(dry: bool) -> dict:
    if dry:
        return dict(device="cpu", dtype="float32", image=112, max_pixels=112 * 112, steps=2, tokens=8,
                    score_images=4, score_batch=4, decode_tokens=8)  # fmt: skip
    return dict(device="cuda", dtype="bfloat16", image=880, max_pixels=786432, steps=4, tokens=128,
                score_images=32, score_batch=16, decode_tokens=128)  # fmt: skip


def build(dry: bool, s: dict, shape: str = "qwen2_5_vl_7b", seed: int = 0):
    """A random-weight model of ``shape`` (reduced sizes in a dry run), built on the device directly, with the
    real tokenizer; Qwen2.5-VL also with its folder's generation config and processor settings."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from qhawkeye.modeling import load_processor
    from qhawkeye.shaped import ShapeSizes, shaped_config

    if shape == "qwen3_vl_4b":
        return build_qwen3(dry, s, seed)
    config = shaped_config(VENDOR, ShapeSizes() if dry else None)
    if not dry:
        config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    with torch.device(s["device"]):
        model = AutoModelForImageTextToText.from_config(config, dtype=getattr(torch, s["dtype"]))
    model.generation_config = GenerationConfig.from_pretrained(VENDOR)
    processor = load_processor(VENDOR, min_pixels=3136, max_pixels=s["max_pixels"])
    return model, processor


def build_qwen3(dry: bool, s: dict, seed: int = 0):
    """Qwen3-VL-4B's shape (:data:`qhawkeye.shaped.QWEN3_VL_4B`; reduced in a dry run) with the real Qwen2
    vocabulary and Qwen3-VL's image processing, built on the device directly."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen3VLForConditionalGeneration

    from qhawkeye.shaped import ShapeSizes, qwen3_vl_config, qwen3_vl_processor

    tokenizer = AutoTokenizer.from_pretrained(str(VENDOR))
    config = qwen3_vl_config(tokenizer, ShapeSizes() if dry else None)
    if not dry:
        config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    with torch.device(s["device"]):
        model = Qwen3VLForConditionalGeneration(config).to(getattr(torch, s["dtype"]))
    model.generation_config = GenerationConfig(eos_token_id=[151645, 151643], pad_token_id=151643)
    return model, qwen3_vl_processor(tokenizer, s["max_pixels"])


def train_arms(dry: bool, s: dict, data_dir: Path, shape: str) -> dict:
    import torch
    import yaml
    from peft import LoraConfig
    from trl import GRPOTrainer

    from qhawkeye.data.training_set import load_training_dataset
    from qhawkeye.rewards import get_reward_funcs
    from qhawkeye.train.config import parse_dict
    from qhawkeye.train.trainer import QHawkeyeGRPOTrainer

    recipe = yaml.safe_load(RECIPE.read_text())
    arms = {"TRL GRPOTrainer (stock)": (GRPOTrainer, {"use_uado": False, "use_pao": False, "pao_eta1": 0.0}),
            "qhawkeye, UADO + PAO (recipe values)": (QHawkeyeGRPOTrainer, {})}  # fmt: skip
    out = {}
    for name, (cls, extra) in arms.items():
        with tempfile.TemporaryDirectory() as tmp:
            values = {**recipe, "model_name_or_path": str(VENDOR), "dataset_path": str(data_dir), "output_dir": tmp,
                      "max_steps": s["steps"], "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
                      "max_completion_length": s["tokens"], "logging_steps": 1, "save_strategy": "no",
                      "report_to": "none", "quality_eval_steps": 0, "quality_eval_benchmark": None,
                      "use_cpu": dry, "bf16": not dry, "dtype": s["dtype"], "attn_implementation": "sdpa",
                      "gradient_checkpointing": not dry, "max_pixels": s["max_pixels"], "disable_tqdm": True,
                      "use_peft": True, "freeze_vision_tower": True, **extra}  # fmt: skip
            model_args, _, config = parse_dict(values, source=str(RECIPE))
            model, processor = build(dry, s, shape)
            model.model.visual.requires_grad_(False)
            dataset = load_training_dataset(data_dir, degraded_column="degraded_image")
            if not dry:
                torch.cuda.reset_peak_memory_stats()
            lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                              target_modules=r"^(?!.*visual).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$")  # fmt: skip
            trainer = cls(model=model, processing_class=processor, args=config, train_dataset=dataset,
                          reward_funcs=get_reward_funcs(config.reward_funcs, config.accuracy_tau,
                                                        config.accuracy_out_of_range), peft_config=lora)  # fmt: skip
            trainer.train()
            times = [h["step_time"] for h in trainer.state.log_history if "step_time" in h]
            out[name] = {
                "step_s": times,
                "median_s": statistics.median(times[1:] or times),
                "peak_gib": None if dry else torch.cuda.max_memory_allocated() / 2**30,
                "completion_tokens": [h.get("completions/mean_length") for h in trainer.state.log_history if "loss" in h],
            }  # fmt: skip
            del trainer, model
            if not dry:
                torch.cuda.empty_cache()
    base = out["TRL GRPOTrainer (stock)"]["median_s"]
    for arm in out.values():
        arm["ratio"] = arm["median_s"] / base
    return out


def scoring(dry: bool, s: dict, shape: str) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from qhawkeye.scoring.config import ScorerConfig
    from qhawkeye.scoring.scorer import Scorer

    model, processor = build(dry, s, shape)
    model.eval()
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((s["image"], s["image"], 3)) * 255).astype("uint8"))
              for _ in range(s["score_images"])]  # fmt: skip
    out = {}
    for name, batch in (
        ("one image per generate call", 1),
        (f"Scorer, batch {s['score_batch']}", s["score_batch"]),
    ):
        config = ScorerConfig(
            model=str(VENDOR), max_new_tokens=s["tokens"], batch_size=batch, dtype=s["dtype"]
        )
        scorer = Scorer.from_loaded(model, processor, config, name="shaped")
        scorer.score_batch(images[:batch])  # warm-up
        sync(dry)
        start = time.perf_counter()
        scorer.score_batch(images)
        sync(dry)
        seconds = time.perf_counter() - start
        out[name] = {"seconds": seconds, "images_per_s": len(images) / seconds}
    first = next(iter(out.values()))["images_per_s"]
    for arm in out.values():
        arm["ratio"] = arm["images_per_s"] / first

    # decode tokens/s at batch 1 against the bandwidth bound
    from transformers import GenerationConfig

    from qhawkeye.prompts import build_messages

    text = processor.apply_chat_template(
        build_messages(with_image=True), add_generation_prompt=True, tokenize=False
    )
    batch = processor(text=[text], images=[images[0]], return_tensors="pt").to(model.device)
    n = s["decode_tokens"]
    plain = GenerationConfig(
        do_sample=False, max_new_tokens=n, min_new_tokens=n, eos_token_id=None, pad_token_id=0
    )
    with torch.inference_mode():
        model.generate(
            **batch, generation_config=GenerationConfig(do_sample=False, max_new_tokens=4, pad_token_id=0)
        )
        sync(dry)
        start = time.perf_counter()
        model.generate(**batch, generation_config=plain)
        sync(dry)
        decode_s = time.perf_counter() - start
        prefill_start = time.perf_counter()
        model(**batch)
        sync(dry)
        prefill_s = time.perf_counter() - prefill_start
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bandwidth = measure_bandwidth(dry)
    # the prompt's prefill is timed on its own and taken out; if timer noise makes that meaningless, keep it in
    tokens_per_s = (n - 1) / (decode_s - prefill_s) if decode_s > 1.5 * prefill_s else n / decode_s
    bound = bandwidth / weight_bytes if bandwidth else None
    out["decode"] = {"tokens": n, "seconds": decode_s, "prefill_s": prefill_s, "tokens_per_s": tokens_per_s,
                     "weight_gib": weight_bytes / 2**30, "bandwidth_gb_s": bandwidth / 1e9 if bandwidth else None,
                     "bound_tokens_per_s": bound, "share_of_bound": tokens_per_s / bound if bound else None}  # fmt: skip
    return out


def processor_check() -> dict:
    """Where torchvision imports, the stock AutoProcessor and the package's image-only processor must give the
    same token ids and pixels for the same image (the image-only one is what CPU machines without torchvision
    use). Checked on the vendored real folder at the recipe's pixel budget."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoProcessor, AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from qhawkeye.modeling import ImageOnlyQwen2_5_VLProcessor, has_torchvision, set_pixel_limits
    from qhawkeye.prompts import build_messages

    if not has_torchvision():
        return {"checked": False, "why": "torchvision does not import here"}
    stock = AutoProcessor.from_pretrained(VENDOR)
    tokenizer = AutoTokenizer.from_pretrained(VENDOR)
    shim = ImageOnlyQwen2_5_VLProcessor(Qwen2VLImageProcessorPil.from_pretrained(VENDOR), tokenizer,
                                        chat_template=tokenizer.chat_template)  # fmt: skip
    for processor in (stock, shim):
        set_pixel_limits(processor.image_processor, 3136, 786432)
    text = stock.apply_chat_template(
        build_messages(with_image=True), add_generation_prompt=True, tokenize=False
    )
    rng, worst, same_ids = np.random.default_rng(0), 0.0, True
    for size in ((1024, 768), (333, 517), (4000, 3000)):
        image = Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))
        a = stock(text=[text], images=[image], return_tensors="pt")
        b = shim(text=[text], images=[image], return_tensors="pt")
        same = torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(
            a["image_grid_thw"], b["image_grid_thw"]
        )
        same_ids = same_ids and same
        worst = max(worst, float((a["pixel_values"].float() - b["pixel_values"].float()).abs().max()))
    return {"checked": True, "same_ids_and_grid": bool(same_ids), "max_abs_pixel_diff": worst}


def sync(dry: bool) -> None:
    if not dry:
        import torch

        torch.cuda.synchronize()


def measure_bandwidth(dry: bool) -> float | None:
    """Bytes/s of a device-to-device copy (read + write counted), the HBM figure the decode bound uses."""
    if dry:
        return None
    import torch

    x = torch.empty(2 * 2**30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    return 2 * x.numel() * 10 / (time.perf_counter() - start)


def table(result: dict) -> str:
    lines = [
        f"{result['device']}, torch {result['torch']}, transformers {result['transformers']}, trl {result['trl']}"
    ]
    check = result.get("processor", {})
    if check.get("checked"):
        lines += ["", f"Stock processor vs image-only processor: same token ids and grid: {check['same_ids_and_grid']}; "
                      f"largest pixel difference {check['max_abs_pixel_diff']:.3g}."]  # fmt: skip
    for shape, part in result["shapes"].items():
        if part["train"] and part["scoring"]:
            lines += ["", f"### {shape}", "", *_shape_table(part)]
    return "\n".join(lines)


def _shape_table(result: dict) -> list[str]:
    lines = ["| training arm | median s/step | ratio vs stock | peak GiB |", "|---|---:|---:|---:|"]
    for name, arm in result["train"].items():
        peak = "n/a" if arm["peak_gib"] is None else f"{arm['peak_gib']:.1f}"
        lines.append(f"| {name} | {arm['median_s']:.2f} | {arm['ratio']:.2f}x | {peak} |")
    lines += ["", "| scoring | seconds | images/s | ratio |", "|---|---:|---:|---:|"]
    for name, arm in result["scoring"].items():
        if name != "decode":
            lines.append(
                f"| {name} | {arm['seconds']:.2f} | {arm['images_per_s']:.2f} | {arm['ratio']:.2f}x |"
            )
    d = result["scoring"]["decode"]
    bound = "n/a" if d["bound_tokens_per_s"] is None else f"{d['bound_tokens_per_s']:.0f}"
    share = "n/a" if d["share_of_bound"] is None else f"{d['share_of_bound']:.0%}"
    lines += ["", f"Decode at batch 1: {d['tokens_per_s']:.1f} tokens/s; weights {d['weight_gib']:.1f} GiB; "
              f"bandwidth bound {bound} tokens/s ({share} of it)."]  # fmt: skip
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, reduced sizes: checks the plumbing")
    parser.add_argument("--out", required=True)
    parser.add_argument("--skip", nargs="*", default=[], choices=["train", "scoring"])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from qhawkeye import allocator

    allocator.tune()  # as the qhawkeye command does
    import torch
    import transformers
    import trl

    from qhawkeye.data.training_set import save_synthetic_training_set

    s = settings(args.dry_run)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"dry_run": args.dry_run, "settings": s, "torch": torch.__version__,
              "transformers": transformers.__version__, "trl": trl.__version__,
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() and not args.dry_run else "cpu",
              "shapes": {}}  # fmt: skip
    result["processor"] = processor_check()
    print("processor", result["processor"], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = save_synthetic_training_set(Path(tmp) / "pairs", n=8, seed=0, size=s["image"])
        for shape in args.shapes:  # each shape's figures are written as soon as they exist
            part = result["shapes"][shape] = {"train": {}, "scoring": {}}
            if "train" not in args.skip:
                part["train"] = train_arms(args.dry_run, s, data, shape)
                print(shape, json.dumps(part["train"], indent=1), flush=True)
            if "scoring" not in args.skip:
                part["scoring"] = scoring(args.dry_run, s, shape)
            (out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
            (out / "gpu_check.md").write_text(table(result) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
