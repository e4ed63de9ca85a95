"""`qhawkeye data review`: humans judge the pairs the filter flagged, in a small local web app.

::

    qhawkeye data review runs/filter --out runs/review            # open the printed URL in a browser
    qhawkeye data review runs/filter --out runs/review --export-only
    python -m qhawkeye.review.main runs/filter --out runs/review   # the same, without the CLI

The review stage reads the filter stage's folder (never writing there) and writes its own folder ``out``:

- ``review.sqlite``: every decision, committed the moment it is made (see :mod:`qhawkeye.review.store`);
  it is the source of truth, and a rerun with the same ``--out`` resumes from it;
- ``manifest.jsonl`` + ``stage.json``: the input records, each pair under review with ``review:
  {"decision", "votes"}`` added (combined by :func:`qhawkeye.review.store.combine_votes`: strict majority,
  ties and unreviewed pairs ``null``).

The manifest is exported when the server starts, when it stops (Ctrl-C / SIGTERM), and by ``--export-only``
(safe while a server runs). A server killed hard (SIGKILL, power loss) loses no decision, only the last
export: run ``--export-only`` before ``qhawkeye data build``.

Importing this module stays light (no FastAPI or uvicorn): they are imported inside :func:`serve`.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from qhawkeye.data.manifest import (
    STAGE,
    file_sha256,
    manifest_path,
    prepare_stage_dir,
    read_records,
    write_records,
)
from qhawkeye.review.pairs import review_pairs, select_pairs
from qhawkeye.review.store import ReviewStore, check_reviewer, combined_decisions

logger = logging.getLogger(__name__)

STAGE_NAME = "review"
DB_NAME = "review.sqlite"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
RULE = "strict majority of reviewers; a tie or no vote is null (undecided)"


@dataclass
class ReviewConfig:
    """Everything `qhawkeye data review` can be told."""

    input: str = field(metadata={"help": "the filter stage's folder (or its manifest.jsonl); never written"})
    out: str = field(metadata={"help": "this stage's folder: review.sqlite, manifest.jsonl, stage.json"})
    host: str = field(
        default="127.0.0.1",
        metadata={"help": "address to bind; anything but loopback lets anyone who reaches it vote"},
    )
    port: int = field(default=8765, metadata={"help": "TCP port to listen on (0: any free port)"})
    reviewer: str | None = field(
        default=None, metadata={"help": "reviewer name the page starts with (each reviewer can type theirs)"}
    )

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.reviewer is not None:
            self.reviewer = check_reviewer(self.reviewer)
        file = manifest_path(self.input)
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no stage manifest here (run `qhawkeye data filter` first)")
        source = file.resolve().parent
        out = Path(self.out).resolve()
        if out == source or source in out.parents:
            raise ValueError(
                f"--out {self.out} lies in the input stage's folder {source}: choose a folder of its own"
            )

    @property
    def db_path(self) -> Path:
        return Path(self.out) / DB_NAME

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def _check_same_input(config: ReviewConfig) -> None:
    """Refuse an ``out`` made from another input manifest; warn when that manifest has changed since."""
    info = Path(config.out) / STAGE
    if not info.is_file():
        return
    previous = json.loads(info.read_text()).get("input", {})
    source = manifest_path(config.input).resolve()
    if previous.get("manifest") != str(source):
        raise FileExistsError(
            f"{config.out} holds the review of {previous.get('manifest')}, not of {source}: "
            "choose another --out for this input"
        )
    if previous.get("sha256") != file_sha256(source):
        logger.warning(
            "%s changed since %s was last exported: decisions on pairs no longer under review stay in %s "
            "but are not exported",
            source,
            config.out,
            DB_NAME,
        )


def _prepare_out(out: str | Path) -> None:
    """Like :func:`prepare_stage_dir`, also accepting a review stopped before its first export."""
    folder = Path(out)
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    if names and not (folder / STAGE).exists() and names <= {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"}:
        return
    prepare_stage_dir(out, STAGE_NAME)


def open_store(config: ReviewConfig) -> ReviewStore:
    """Check the input and ``out`` (creating it), then open (or create) the decision store."""
    review_pairs(config.input)  # fail before creating anything
    _prepare_out(config.out)
    _check_same_input(config)
    return ReviewStore(config.db_path)


def _summary(records: list[dict], reviewed: dict[str, dict]) -> dict:
    decisions = [r["decision"] for r in reviewed.values()]
    reviewers = sorted({name for r in reviewed.values() for name in r["votes"]})
    return {
        "pairs": len(records),
        "under_review": len(reviewed),
        "perceptible": decisions.count("perceptible"),
        "imperceptible": decisions.count("imperceptible"),
        "undecided": decisions.count(None),
        "reviewers": reviewers,
    }


def export(config: ReviewConfig) -> Path:
    """Write ``out/manifest.jsonl``: the input records, with ``review`` on each pair under review."""
    if not config.db_path.is_file():
        raise FileNotFoundError(
            f"{config.db_path}: no review decisions here yet; run `qhawkeye data review` without --export-only"
        )
    return _export(config, open_store(config))


def _export(config: ReviewConfig, store: ReviewStore) -> Path:
    source = manifest_path(config.input)
    records = read_records(source)
    reviewed = combined_decisions(store, [p.id for p in select_pairs(records, source)])
    out = [{**r, "review": reviewed[str(r["id"])]} if str(r["id"]) in reviewed else r for r in records]
    params = {"input": str(source.resolve()), "db": DB_NAME, "rule": RULE}
    summary = _summary(records, reviewed)
    path = write_records(config.out, out, stage=STAGE_NAME, params=params, source=source, summary=summary)
    logger.info(
        "exported %s: %d perceptible, %d imperceptible, %d undecided of %d under review",
        path,
        summary["perceptible"],
        summary["imperceptible"],
        summary["undecided"],
        summary["under_review"],
    )
    return path


def serve(config: ReviewConfig) -> None:
    """Export, serve the review page until SIGINT/SIGTERM, then export again."""
    try:
        import uvicorn

        from qhawkeye.review.app import build_app
    except ImportError as err:
        raise ImportError(
            f"qhawkeye data review needs the review extra: pip install 'qhawkeye[review]' ({err})"
        ) from err
    _export(config, open_store(config))
    hosts = ["127.0.0.1", "localhost"] if config.host in ("127.0.0.1", "localhost") else None
    app = build_app(
        config.input, config.db_path, config.reviewer, on_shutdown=lambda: export(config), allowed_hosts=hosts
    )
    if config.host not in LOOPBACK:
        logger.warning("listening on %s: anyone who can reach it can vote under any name", config.host)
    logger.info("review at %s (Ctrl-C to stop; decisions are saved as they are made)", config.url)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `qhawkeye data review` (help texts from :class:`ReviewConfig`)."""
    help_of = {name: f.metadata["help"] for name, f in ReviewConfig.__dataclass_fields__.items()}
    parser.add_argument("input", metavar="FILTER_DIR", help=help_of["input"])
    parser.add_argument("--out", required=True, metavar="REVIEW_DIR", help=help_of["out"])
    parser.add_argument("--host", default="127.0.0.1", help=help_of["host"] + " (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8765, help=help_of["port"] + " (default: %(default)s)")
    parser.add_argument("--reviewer", default=None, help=help_of["reviewer"])
    parser.add_argument(
        "--export-only",
        action="store_true",
        help="write REVIEW_DIR/manifest.jsonl from the decisions so far and exit (safe while a server runs)",
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run `qhawkeye data review` for parsed :func:`add_arguments` flags; the exit status."""
    config = ReviewConfig(
        input=args.input, out=args.out, host=args.host, port=args.port, reviewer=args.reviewer
    )
    if args.export_only:
        export(config)
    else:
        serve(config)
    return 0


def cli_main(argv: list[str] | None = None) -> int:
    """``python -m qhawkeye.review.main [flags]``: the same as ``qhawkeye data review [flags]``."""
    parser = argparse.ArgumentParser(prog="qhawkeye data review", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return run_from_args(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        parser.exit(1, f"qhawkeye data review: error: {err}\n")


if __name__ == "__main__":
    raise SystemExit(cli_main())
