"""`qhawkeye data degrade` and `qhawkeye data redegrade`: the degraded partner of every original.

degrade: one degradation per original, drawn from the configured list with a generator seeded by (seed,
group id), so a rerun gives byte-identical files; parameters are SPEC's first-pass settings by default. Each
degraded copy has the original's size and is written as a lossless PNG into the stage's own ``images/``
folder (never next to the inputs), atomically, so a killed run leaves only complete files and a rerun skips
them. Images are processed by a process pool.

redegrade: pairs confirmed imperceptible (the review decision, or the filter's flag with
``--unreviewed keep``) get a second, *different* degradation at the stronger settings applied on top of
their first degraded image, written as new files; ``degradation`` becomes ``first+second``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from qhawkeye.atomic import atomic_file
from qhawkeye.data.degradations import FIRST, SECOND, DegradationParams, degrade, get_degradation
from qhawkeye.data.manifest import STAGE_FIELDS, begin_stage, read_records, write_records
from qhawkeye.images import UnreadableImage, load_image

logger = logging.getLogger(__name__)


@dataclass
class DegradeConfig:
    """Which degradations, how strong, how seeded, how parallel."""

    degradations: list[str] = field(
        default_factory=lambda: ["noise", "blur", "jpeg", "darken"],
        metadata={"help": "degradations to draw from, uniformly"},
    )
    seed: int = field(default=0, metadata={"help": "seed of the draws (with each pair's group id)"})
    noise_std: float = field(default=FIRST.noise_std, metadata={"help": "Gaussian noise std (0-255 scale)"})
    blur_radius: float = field(default=FIRST.blur_radius, metadata={"help": "Gaussian blur radius (pixels)"})
    jpeg_quality: int = field(default=FIRST.jpeg_quality, metadata={"help": "JPEG quality (1-95)"})
    jpeg_passes: int = field(default=FIRST.jpeg_passes, metadata={"help": "JPEG re-encodings"})
    darken_factor: float = field(
        default=FIRST.darken_factor, metadata={"help": "brightness factor (<1 darker)"}
    )
    workers: int = field(default=os.cpu_count() or 1, metadata={"help": "processes (1 = in this process)"})

    def __post_init__(self):
        for name in self.degradations:
            get_degradation(name)  # did-you-mean on a typo
        if not self.degradations:
            raise ValueError("degradations must not be empty")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        self.params()  # range checks of every strength, named

    def params(self) -> DegradationParams:
        return DegradationParams(self.noise_std, self.blur_radius, self.jpeg_quality, self.jpeg_passes,
                                 self.darken_factor)  # fmt: skip


def _rng(seed: int, group_id: str, stage: str) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256(f"{stage}\0{group_id}".encode()).digest()[:8], "little")
    return np.random.default_rng([seed, key])


def _file_name(group_id: str) -> str:
    """A safe, unique file name for a group id (readable prefix + hash)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in group_id)[-60:]
    return f"{safe}-{hashlib.sha256(group_id.encode()).hexdigest()[:10]}.png"


def _save_atomic(img: Image.Image, path: Path) -> None:
    with atomic_file(path, "wb") as handle:
        img.save(handle, format="PNG")


def _degrade_one(task: tuple) -> tuple[str, str, bool, str | None]:
    """(source path, target path, names to draw from, seed, group id, params, stage, exclude) ->
    (group id, degradation, written now, why the source could not be read or None)."""
    source, target, names, seed, group_id, params, stage, exclude = task
    rng = _rng(seed, group_id, stage)
    choices = [n for n in names if n not in exclude]
    name = choices[rng.integers(len(choices))]
    target = Path(target)
    if target.is_file():  # written atomically earlier: complete
        return group_id, name, False, None
    try:
        img = load_image(source)
    except UnreadableImage as err:
        return group_id, name, False, str(err)
    _save_atomic(degrade(img, name, rng, params), target)
    return group_id, name, True, None


def _run_tasks(
    tasks: list[tuple], workers: int, progress: bool, desc: str
) -> tuple[dict[str, tuple[str, bool]], dict[str, str]]:
    """Degrade every task; returns ``{group id: (degradation, written now)}`` and ``{group id: why}`` for
    the sources that could not be read (the run goes on without them)."""
    bar = tqdm(total=len(tasks), desc=desc, unit="img", disable=not progress)
    done: dict[str, tuple[str, bool]] = {}
    failed: dict[str, str] = {}
    if workers <= 1:
        results = map(_degrade_one, tasks)
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_degrade_one, tasks, chunksize=max(1, len(tasks) // (workers * 8)))
    try:
        for group_id, name, written, error in results:
            if error is None:
                done[group_id] = (name, written)
            else:
                failed[group_id] = error
                logger.warning("group %s skipped: %s", group_id, error)
            bar.update()
    finally:
        bar.close()
        if workers > 1:
            pool.shutdown()
    return done, failed


def run_degrade(
    input_dir: str | Path,
    out: str | Path,
    config: DegradeConfig,
    progress: bool = True,
    dry_run: bool = False,
) -> dict:
    """Degrade every original of the input manifest into ``out/images``; write the degrade manifest."""
    records = read_records(input_dir)
    out_path = Path(out).resolve()  # records carry absolute paths
    images = out_path / "images"
    tasks = [(r["image"], str(images / _file_name(r["group_id"])), config.degradations, config.seed,
              r["group_id"], config.params(), "first", ()) for r in records]  # fmt: skip
    if dry_run:
        return {
            "pairs": len(records),
            "to_write": sum(not Path(t[1]).is_file() for t in tasks),
            "dry_run": True,
        }
    params = {k: v for k, v in asdict(config).items() if k != "workers"}
    begin_stage(out_path, "degrade", params, source=input_dir)
    images.mkdir(exist_ok=True)
    done, failed = _run_tasks(tasks, config.workers, progress, "degrading")
    new = []
    for r, task in zip(records, tasks, strict=True):
        if r["group_id"] in failed:
            continue
        name = done[r["group_id"]][0]
        new.append({**r, "degraded": task[1], "degradation": name, "degradation_seed": config.seed})
    counts = _count(name for name, _ in done.values())
    summary = {"pairs": len(new), "written_now": sum(w for _, w in done.values()), "per_type": counts,
               "unreadable": [{"group_id": g, "error": e} for g, e in sorted(failed.items())]}  # fmt: skip
    write_records(out_path, new, "degrade", params, source=input_dir, summary=summary)
    return summary


def _count(names) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def confirmed_imperceptible(record: dict, unreviewed: str) -> bool:
    """Whether a pair gets the second degradation: the review said so, or (unreviewed keep) the filter did."""
    review = record.get("review") or {}
    if review.get("decision") is not None:
        return review["decision"] == "imperceptible"
    flagged = (record.get("filter") or {}).get("flagged")
    return bool(flagged) and unreviewed == "keep"


def run_redegrade(
    input_dir: str | Path,
    out: str | Path,
    config: DegradeConfig,
    unreviewed: str = "drop",
    progress: bool = True,
    dry_run: bool = False,
) -> dict:
    """Second, different, stronger degradation on top of the first, for pairs confirmed imperceptible.

    ``config``'s strengths default to the first pass's; :func:`second_pass_config` gives SPEC's stronger ones.
    """
    if unreviewed not in ("keep", "drop"):
        raise ValueError(
            "unreviewed must be 'keep' (trust the filter's flag) or 'drop' (only reviewed pairs)"
        )
    records = read_records(input_dir, need=STAGE_FIELDS["degrade"])
    out_path = Path(out).resolve()  # records carry absolute paths
    images = out_path / "images"
    chosen = [r for r in records if confirmed_imperceptible(r, unreviewed)]
    tasks = [(r["degraded"], str(images / _file_name(r["group_id"])), config.degradations, config.seed,
              r["group_id"], config.params(), "second", (r["degradation"].split("+")[-1],)) for r in chosen]  # fmt: skip
    if dry_run:
        return {"pairs": len(records), "redegrade": len(chosen), "dry_run": True}
    params = {**{k: v for k, v in asdict(config).items() if k != "workers"}, "unreviewed": unreviewed}
    begin_stage(out_path, "redegrade", params, source=input_dir)
    images.mkdir(exist_ok=True)
    done, failed = _run_tasks(tasks, config.workers, progress, "redegrading")
    by_group = {t[4]: t[1] for t in tasks}
    new = []
    for r in records:
        if r["group_id"] in failed:  # its degraded image does not decode: the pair is dropped
            continue
        if r["group_id"] in done:
            second = done[r["group_id"]][0]
            r = {**r, "first_degraded": r["degraded"], "degraded": by_group[r["group_id"]],
                 "degradation": f"{r['degradation']}+{second}"}  # fmt: skip
        new.append(r)
    summary = {"pairs": len(new), "redegraded": len(done), "unreviewed": unreviewed,
               "per_type": _count(r["degradation"] for r in new),
               "unreadable": [{"group_id": g, "error": e} for g, e in sorted(failed.items())]}  # fmt: skip
    write_records(out_path, new, "redegrade", params, source=input_dir, summary=summary)
    return summary


def second_pass_config(**overrides) -> DegradeConfig:
    """SPEC's stronger second-pass settings (noise 65, blur 4.0, jpeg 5 x3, darken 0.5)."""
    base = dict(noise_std=SECOND.noise_std, blur_radius=SECOND.blur_radius, jpeg_quality=SECOND.jpeg_quality,
                jpeg_passes=SECOND.jpeg_passes, darken_factor=SECOND.darken_factor)  # fmt: skip
    return DegradeConfig(**{**base, **overrides})
