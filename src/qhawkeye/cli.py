"""`qhawkeye <subcommand>`: each subcommand parses its arguments and calls one module's entry point."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from qhawkeye.cli_args import add_dataclass_arguments, dataclass_from_args


def _parse_override(text: str) -> tuple[str, object]:
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def _cmd_train(args) -> int:
    if args.list_fields:
        return _list_fields()
    if args.config is None:
        print("qhawkeye train: give a CONFIG.yaml (see configs/train/)", file=sys.stderr)
        return 2
    from qhawkeye.train.main import main

    main(args.config, dict(args.set or []), resume=args.resume)
    return 0


def _list_fields() -> int:
    from dataclasses import MISSING, fields

    from qhawkeye.train.config import CONFIG_CLASSES

    for cls in CONFIG_CLASSES:
        print(f"# {cls.__name__}")
        for f in fields(cls):
            if not f.init or "help" not in f.metadata:
                continue
            default = (
                f.default
                if f.default is not MISSING
                else (f.default_factory() if f.default_factory is not MISSING else "")
            )
            print(f"  {f.name} = {default!r}\n      {f.metadata['help']}")
    return 0


def _cmd_build_tiny(args) -> int:
    from qhawkeye.tiny import build_tiny_model, ensure_tiny_model
    from qhawkeye.train.warmstart import build_format_model, ensure_format_model

    if args.format_warm_start:
        path = build_format_model(args.out, args.variant) if args.out else ensure_format_model(args.variant)
    else:
        path = build_tiny_model(args.out, args.variant) if args.out else ensure_tiny_model(args.variant)
    print(path)
    return 0


def _cmd_demo(args) -> int:
    from qhawkeye.demo import DemoConfig, run_demo
    from qhawkeye.evaluate.demo_report import verdict

    summary = run_demo(dataclass_from_args(DemoConfig, args))
    print(f"\nqhawkeye demo: held-out test images, {summary['task']} (synthetic labels, not human scores)")
    print(f"{'model':32s} {'SRCC':>8s} {'PLCC':>8s} {'parsed':>8s}")
    rows = (("warm start (format only)", "warm_start"), ("Q-Hawkeye GRPO", "trained"),
            ("Q-Hawkeye GRPO, greedy", "trained_greedy"))  # fmt: skip
    for name, key in rows:
        bench = summary[key]
        m = bench["metrics"]
        srcc, plcc = (float("nan") if v is None else v for v in (m["srcc"], m["plcc"]))
        print(f"{name:32s} {srcc:8.3f} {plcc:8.3f} {bench['n']:4d}/{bench['n_total']}")
    print(verdict(summary["comparison"]))
    print(f"\nreport: {args.out}/report/README.md")
    print(f"score other images with the trained model (in the expected mode its run recorded: its greedy answers "
          f"tie):\n  qhawkeye score <images or folder> --model {args.out}/model")  # fmt: skip
    return 0


def _cmd_score(args) -> int:
    from qhawkeye.scoring.config import ScorerConfig
    from qhawkeye.scoring.main import run, write_summary

    config = dataclass_from_args(ScorerConfig, args)
    summary = run(
        args.paths, config, out=args.out, fmt=args.format, limit=args.limit, progress=not args.quiet
    )
    write_summary(summary)
    return 0


def _cmd_distill(args) -> int:
    from qhawkeye.student.config import DistillConfig
    from qhawkeye.student.distill import distill

    summary = distill(dataclass_from_args(DistillConfig, args), progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_evaluate(args) -> int:
    from qhawkeye.evaluate.config import EvaluateConfig
    from qhawkeye.evaluate.run import evaluate
    from qhawkeye.scoring.config import ScorerConfig

    results = evaluate(
        dataclass_from_args(ScorerConfig, args), dataclass_from_args(EvaluateConfig, args), not args.quiet
    )
    if results is not None:  # process 0
        from qhawkeye.evaluate.report import render_markdown

        print(render_markdown(results))
        print(f"results: {args.out}/results.json, {args.out}/results.md, plots in {args.out}/plots/")
    return 0


def _cmd_serve(args) -> int:
    from qhawkeye.serve.main import config_from_args, main

    main(config_from_args(args))
    return 0


def _print_summary(summary: dict) -> None:
    import json

    print(json.dumps(summary, indent=2))


def _cmd_data_ingest(args) -> int:
    from qhawkeye.data.ingest import IngestConfig, run_ingest

    config = dataclass_from_args(IngestConfig, args)
    _print_summary(run_ingest(config, args.out, progress=not args.quiet, dry_run=args.dry_run))
    return 0


def _cmd_data_degrade(args) -> int:
    from qhawkeye.data.pairs import DegradeConfig, run_degrade, run_redegrade

    config = dataclass_from_args(DegradeConfig, args)
    if args.data_command == "degrade":
        summary = run_degrade(args.input, args.out, config, progress=not args.quiet, dry_run=args.dry_run)
    else:
        summary = run_redegrade(args.input, args.out, config, args.unreviewed, not args.quiet, args.dry_run)
    _print_summary(summary)
    return 0


def _cmd_data_filter(args) -> int:
    from qhawkeye.data.vlm_filter import run_from_args

    _print_summary(run_from_args(args))
    return 0


def _cmd_data_review(args) -> int:
    from qhawkeye.review.main import run_from_args

    return run_from_args(args)


def _cmd_data_build(args) -> int:
    from qhawkeye.data.build import run_build

    _print_summary(run_build(args.inputs, args.out, args.unreviewed, dry_run=args.dry_run))
    return 0


def _add_data_parser(sub) -> None:
    """`qhawkeye data <stage>`: each stage reads the previous stage's folder and writes a new one."""
    from dataclasses import asdict

    from qhawkeye.data.ingest import IngestConfig
    from qhawkeye.data.pairs import DegradeConfig, second_pass_config

    data = sub.add_parser("data", help="the data pipeline: ingest, degrade, filter, review, redegrade, build")
    stages = data.add_subparsers(dest="data_command", required=True)

    def stage(name: str, help_text: str, func):
        p = stages.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--dry-run", action="store_true", help="show what would be done; write nothing")
        p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        p.set_defaults(func=func)
        return p

    p = stage("ingest", "validate a label file (through a benchmark card) and write the first manifest",
              _cmd_data_ingest)  # fmt: skip
    p.add_argument("--out", required=True, help="new stage folder")
    add_dataclass_arguments(p, IngestConfig)

    p = stage(
        "degrade", "one seeded degradation per original, same size, written as new files", _cmd_data_degrade
    )
    p.add_argument("input", help="ingest stage folder")
    p.add_argument("--out", required=True, help="new stage folder (images/ and manifest.jsonl)")
    add_dataclass_arguments(p, DegradeConfig)

    from qhawkeye.data.vlm_filter import add_arguments as add_filter_arguments

    p = stage("filter", "flag pairs whose difference looks imperceptible: a score gap, a VLM's yes/no, or SSIM",
              _cmd_data_filter)  # fmt: skip
    add_filter_arguments(p)

    p = stages.add_parser(
        "review",
        help="review the pairs the filter flagged, side by side in a local web page",
        description="Serves a page (default http://127.0.0.1:8765) asking each reviewer 'can you see a "
        "difference?' per flagged pair. Decisions go to REVIEW_DIR/review.sqlite as they are made; "
        "REVIEW_DIR/manifest.jsonl is exported at start, at stop and with --export-only.",
    )
    from qhawkeye.review.main import add_arguments as add_review_arguments

    add_review_arguments(p)
    p.set_defaults(func=_cmd_data_review)

    p = stage("redegrade", "a second, different, stronger degradation for pairs confirmed imperceptible",
              _cmd_data_degrade)  # fmt: skip
    p.add_argument("input", help="review (or filter) stage folder")
    p.add_argument("--out", required=True, help="new stage folder")
    p.add_argument("--unreviewed", choices=["keep", "drop"], required=True,
                   help="flagged pairs nobody reviewed: keep = trust the filter and redegrade them, drop = leave them")  # fmt: skip
    second = {k: v for k, v in asdict(second_pass_config()).items() if k != "workers"}
    add_dataclass_arguments(p, DegradeConfig, defaults=second)  # SPEC's stronger second-pass settings

    p = stage("build", "a Hugging Face dataset (save_to_disk) ready for qhawkeye train", _cmd_data_build)
    p.add_argument("inputs", nargs="+", help="stage folders (one per source) to build into one set")
    p.add_argument("--out", required=True, help="new dataset folder")
    p.add_argument("--unreviewed", choices=["keep", "drop"], required=True,
                   help="flagged pairs nobody reviewed (or tied, or undecided): keep or drop them")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qhawkeye", description="Q-Hawkeye image quality assessment toolkit"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train with Q-Hawkeye GRPO from a YAML recipe")
    p.add_argument("config", nargs="?", help="YAML recipe (configs/train/*.yaml)")
    p.add_argument(
        "--set", action="append", type=_parse_override, metavar="KEY=VALUE", help="override a field"
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="last",
        default=None,
        metavar="CHECKPOINT",
        help="resume from the last checkpoint in output_dir, or from CHECKPOINT",
    )
    p.add_argument("--list-fields", action="store_true", help="list every config field with its help")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("build-tiny", help="build the embedded tiny offline Qwen2.5-VL")
    p.add_argument("--variant", default="tiny", choices=["tiny", "small"])
    p.add_argument("--out", default=None, help="folder to write (default: the qhawkeye cache)")
    p.add_argument(
        "--format-warm-start",
        action="store_true",
        help="add the image-blind format-only fine-tune (demo/tests; see qhawkeye.train.warmstart)",
    )
    p.set_defaults(func=_cmd_build_tiny)

    p = sub.add_parser(
        "score",
        help="score images, folders or JSON/JSONL manifests (scores in [1, 5], higher is better)",
        description="Score images with a quality model. Writes one JSON object (or CSV row) per image; a rerun "
        "with the same --out skips the images already scored.",
    )
    p.add_argument("paths", nargs="+", help="image files, folders (recursive) or JSON/JSONL manifests")
    p.add_argument(
        "--out", "-o", default=None, help="results file (.jsonl or .csv); default: JSONL to stdout"
    )
    p.add_argument("--format", choices=["jsonl", "csv"], default=None, help="default: from --out's suffix")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images (smoke run)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    from qhawkeye.scoring.config import ScorerConfig

    add_dataclass_arguments(p, ScorerConfig)
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser(
        "distill",
        help="fit a fast CPU student scorer on human labels and/or a teacher's score files",
        description="A student is a ridge head on pooled EfficientNet-Lite0 features: it scores through "
        "`qhawkeye score/evaluate/serve` like any model (--model <out>). Teacher files are `qhawkeye score` "
        "output of any model; uncertain teacher scores weigh less. Features are cached in <out>.work/ "
        "(an interrupted run resumes).",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    from qhawkeye.student.config import DistillConfig

    add_dataclass_arguments(p, DistillConfig)
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser(
        "evaluate",
        help="SRCC/PLCC/KRCC/RMSE with bootstrap intervals on IQA benchmarks (resumable, data-parallel)",
        description="Score each benchmark (cards: built-in names or YAML files), then write results.json, "
        "results.md and scatter plots. Launch with torchrun/accelerate to shard the scoring over processes.",
    )
    from qhawkeye.evaluate.config import EvaluateConfig

    p.add_argument("--benchmarks", nargs="+", default=["koniq"], help="built-in card names or YAML cards")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_dataclass_arguments(p, EvaluateConfig, skip=("benchmarks",))
    add_dataclass_arguments(p, ScorerConfig)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP: OpenAI-compatible chat completions, /v1/score, /v1/models, /health",
        description="One loaded model, many clients: queued requests are batched by one worker thread. Binds "
        "127.0.0.1 by default; set --api-key (or QHAWKEYE_API_KEY) before binding anywhere else.",
    )
    from qhawkeye.serve.main import add_arguments

    add_arguments(p)
    p.set_defaults(func=_cmd_serve)

    _add_data_parser(sub)

    p = sub.add_parser(
        "demo",
        help="the whole system offline: sample data, pipeline, warm start, GRPO (UADO+PAO), evaluation, report",
    )
    from qhawkeye.demo import DemoConfig

    add_dataclass_arguments(p, DemoConfig)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from qhawkeye import allocator

    try:
        allocator.tune()  # reuse freed big tensors instead of page-faulting them in every step
    except ValueError as err:
        print(f"qhawkeye: error: {err}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"qhawkeye {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
