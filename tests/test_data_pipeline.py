"""`qhawkeye data` ingest -> degrade -> redegrade -> build on real image files; inputs never change."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from qhawkeye import cli
from qhawkeye.data.build import run_build, selection
from qhawkeye.data.ingest import IngestConfig, run_ingest
from qhawkeye.data.manifest import read_records, write_records
from qhawkeye.data.pairs import DegradeConfig, run_degrade, run_redegrade, second_pass_config
from qhawkeye.data.training_set import load_training_dataset

ROOT = Path(__file__).resolve().parents[1]


def _photo(seed: int, size=(96, 80)) -> Image.Image:
    """A smooth gradient with shapes and texture: enough structure for blur and JPEG to show."""
    rng = np.random.default_rng(seed)
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    base = np.stack([x * 200 + 30, y * 180 + 40, (1 - x) * 150 + 60], axis=-1) + rng.normal(0, 3, (h, w, 3))
    img = Image.fromarray(np.clip(base, 0, 255).astype("uint8"))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
        draw.rectangle(
            [x0, y0, x0 + rng.integers(5, 20), y0 + rng.integers(5, 20)], fill=tuple(rng.integers(0, 255, 3))
        )
    return img


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture()
def source(tmp_path) -> Path:
    """A DeQA-style label file (MOS 0-100) over 8 real image files (PNG and JPEG)."""
    folder = tmp_path / "src"
    (folder / "images").mkdir(parents=True)
    rows = []
    for n in range(8):
        name = f"images/p{n}.{'png' if n % 2 else 'jpg'}"
        _photo(n).save(folder / name, quality=95)
        rows.append({"id": f"p{n}", "images": [name], "gt_score": 10.0 + 10 * n})
    (folder / "meta.json").write_text(json.dumps(rows))
    return folder


def _ingest(source: Path, out: Path, **kw) -> dict:
    config = IngestConfig(labels=str(source / "meta.json"), mos_range=(0, 100), data_root=str(source), **kw)
    return run_ingest(config, out, progress=False)


def _psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def test_ingest_reports_every_bad_row_and_writes_nothing(source, tmp_path):
    rows = json.loads((source / "meta.json").read_text())
    rows[1]["gt_score"] = 140.0  # out of range
    rows[2]["id"] = "p0"  # duplicate id
    (source / "images" / "p3.png").write_bytes(b"not an image")  # corrupt
    rows[4]["images"] = ["images/missing.png"]  # missing
    (source / "meta.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError) as err:
        _ingest(source, tmp_path / "ingest")
    message = str(err.value)
    assert "4 bad rows" in message and "nothing was written" in message
    for part in ("140", "duplicate id 'p0'", "p3.png", "missing.png"):
        assert part in message
    assert not (tmp_path / "ingest").exists()
    summary = _ingest(source, tmp_path / "ingest", skip_bad=True)
    assert summary["kept"] == 4 and len(summary["skipped"]) == 4
    records = read_records(tmp_path / "ingest")
    assert [r["id"] for r in records] == ["p0", "p5", "p6", "p7"]
    assert records[1]["gt_score"] == pytest.approx(1 + 4 * 60 / 100)  # MOS 60 on the fixed 0-100 range


def test_degrade_is_seeded_same_size_lower_quality_and_leaves_inputs_alone(source, tmp_path):
    before = _tree_digest(source)
    _ingest(source, tmp_path / "ingest")
    ingest_digest = _tree_digest(tmp_path / "ingest")
    for name, bound in {"noise": 20.0, "blur": 33.0, "jpeg": 33.0, "darken": 20.0}.items():
        out = tmp_path / f"deg-{name}"
        run_degrade(tmp_path / "ingest", out, DegradeConfig(degradations=[name], workers=1), progress=False)
        for r in read_records(out):
            with Image.open(r["image"]) as orig, Image.open(r["degraded"]) as deg:
                assert deg.size == orig.size and r["degradation"] == name
                assert _psnr(orig.convert("RGB"), deg.convert("RGB")) < bound, (name, r["id"])
            assert Path(r["degraded"]).is_absolute() and Path(r["degraded"]).parent == out / "images"
    a, b, c = (tmp_path / x for x in ("a", "b", "c"))
    run_degrade(tmp_path / "ingest", a, DegradeConfig(seed=3, workers=2), progress=False)
    run_degrade(tmp_path / "ingest", b, DegradeConfig(seed=3, workers=1), progress=False)
    run_degrade(tmp_path / "ingest", c, DegradeConfig(seed=4, workers=2), progress=False)
    assert _tree_digest(a / "images") == _tree_digest(b / "images")  # parallel == sequential, same seed
    assert _tree_digest(a / "images") != _tree_digest(c / "images")
    assert _tree_digest(source) == before and _tree_digest(tmp_path / "ingest") == ingest_digest
    with pytest.raises(FileExistsError, match="other degrade parameters"):
        run_degrade(tmp_path / "ingest", a, DegradeConfig(seed=5), progress=False)


def test_relative_output_folder_gives_absolute_paths(source, tmp_path, monkeypatch):
    _ingest(source, tmp_path / "ingest")
    monkeypatch.chdir(tmp_path)
    run_degrade("ingest", "relative", DegradeConfig(degradations=["blur"], workers=1), progress=False)
    monkeypatch.chdir(source)  # a later stage run from elsewhere still finds the files
    assert all(Path(r["degraded"]).is_file() for r in read_records(tmp_path / "relative"))


def test_killed_degrade_run_resumes_to_the_same_result(source, tmp_path):
    _ingest(source, tmp_path / "ingest")
    full, killed = tmp_path / "full", tmp_path / "killed"
    run_degrade(tmp_path / "ingest", full, DegradeConfig(workers=2), progress=False)
    shutil.copytree(full, killed)
    # what a kill leaves: no final manifest, some images missing, a half-written temporary file
    (killed / "manifest.jsonl").unlink()
    for path in sorted((killed / "images").iterdir())[::2]:
        path.unlink()
    (killed / "images" / ".x.png.tmp").write_bytes(b"half")
    info = json.loads((killed / "stage.json").read_text())
    (killed / "stage.json").write_text(json.dumps({"stage": "degrade", "params": info["params"]}))
    summary = run_degrade(tmp_path / "ingest", killed, DegradeConfig(workers=2), progress=False)
    assert summary["written_now"] == 4
    done = {k: v for k, v in _tree_digest(killed / "images").items() if not k.endswith(".tmp")}
    assert done == _tree_digest(full / "images")

    def same_fields(folder):  # the records, with the stage folder's own path taken out
        return [{**r, "degraded": Path(r["degraded"]).name} for r in read_records(folder)]

    assert same_fields(killed) == same_fields(full)


def test_redegrade_and_build_train_ready(source, tmp_path, tiny_model_dir):
    _ingest(source, tmp_path / "ingest")
    run_degrade(tmp_path / "ingest", tmp_path / "degrade", DegradeConfig(workers=1), progress=False)
    records = read_records(tmp_path / "degrade")
    for n, r in enumerate(
        records
    ):  # a stand-in filter and review: pairs 0-2 flagged, 0 confirmed, 1 rejected
        r["filter"] = {"mode": "test", "flagged": n < 3}
    records[0]["review"] = {"decision": "imperceptible", "votes": {"ana": "imperceptible"}}
    records[1]["review"] = {"decision": "perceptible", "votes": {"ana": "perceptible"}}
    write_records(tmp_path / "review", records, "review", {}, source=tmp_path / "degrade")
    degrade_digest = _tree_digest(tmp_path / "degrade")
    run_redegrade(
        tmp_path / "review", tmp_path / "redeg", second_pass_config(workers=1), "drop", progress=False
    )
    out = {r["id"]: r for r in read_records(tmp_path / "redeg")}
    first = records[0]
    assert out[first["id"]]["first_degraded"] == first["degraded"]
    one, two = out[first["id"]]["degradation"].split("+")
    assert one == first["degradation"] and two != one
    assert Path(out[first["id"]]["degraded"]).parent == tmp_path / "redeg" / "images"
    assert _tree_digest(tmp_path / "degrade") == degrade_digest  # the first degraded file is untouched
    assert "first_degraded" not in out[records[2]["id"]]  # flagged, not reviewed, --unreviewed drop

    with pytest.raises(ValueError, match="--unreviewed"):
        run_build([tmp_path / "redeg"], tmp_path / "ds", None)
    summary = run_build([tmp_path / "redeg"], tmp_path / "ds", "drop")
    assert summary["pairs"] == 7 and summary["redegraded"] == 1 and summary["reviewed"] == 2
    data = load_training_dataset(tmp_path / "ds", degraded_column="degraded_image")
    row = data[0]
    assert row["image"].size == row["degraded_image"].size and 1 <= row["gt_score"] <= 5
    assert set(data.column_names) >= {
        "image",
        "degraded_image",
        "gt_score",
        "group_id",
        "degradation",
        "prompt",
    }

    # the built set trains with PAO on
    recipe = str(ROOT / "configs" / "train" / "tiny_cpu.yaml")
    sets = [f"dataset_path={tmp_path / 'ds'}", f"output_dir={tmp_path / 'run'}", "max_steps=2", "save_steps=2",
            "max_completion_length=16", f"model_name_or_path={tiny_model_dir}", "use_pao=true"]  # fmt: skip
    assert cli.main(["train", recipe, *[a for s in sets for a in ("--set", s)]]) == 0
    history = json.loads((tmp_path / "run" / "checkpoint-2" / "trainer_state.json").read_text())[
        "log_history"
    ]
    assert all("qhawkeye/kl_prcp" in h for h in history if "loss" in h)


def test_selection_rules():
    assert selection({"filter": {"flagged": False}}, "drop") == "keep"
    assert selection({}, "drop") == "keep"  # no filter ran
    assert selection({"filter": {"flagged": True}}, "keep") == "keep"
    assert selection({"filter": {"flagged": True}}, "drop").startswith("drop")
    assert selection({"filter": {"flagged": None}}, "drop").startswith(
        "drop"
    )  # undecided counts as unreviewed
    assert selection({"filter": {"flagged": True}, "review": {"decision": "perceptible"}}, "drop") == "keep"
    assert selection({"review": {"decision": "imperceptible"}}, "keep").startswith("drop: confirmed")
    assert selection({"review": {"decision": "imperceptible"}, "first_degraded": "x"}, "drop") == "keep"


def test_several_sources_build_into_one_set_and_cli_dry_run(source, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(source, other)
    rows = json.loads((other / "meta.json").read_text())
    for r in rows:
        r["gt_score"] = 1 + r["gt_score"] / 25  # a second source on its own 1-5 scale
    (other / "meta.json").write_text(json.dumps(rows))
    _ingest(source, tmp_path / "i1", name="alpha")
    run_ingest(IngestConfig(labels=str(other / "meta.json"), mos_range=(1, 5), data_root=str(other), name="beta"),
               tmp_path / "i2", progress=False)  # fmt: skip
    for i in ("1", "2"):
        run_degrade(tmp_path / f"i{i}", tmp_path / f"d{i}", DegradeConfig(workers=1), progress=False)
    assert cli.main(["data", "build", str(tmp_path / "d1"), str(tmp_path / "d2"), "--out", str(tmp_path / "ds"),
                     "--unreviewed", "drop", "--dry-run"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["per_source"] == {"alpha": 8, "beta": 8}
    assert not (tmp_path / "ds").exists()
    assert cli.main(["data", "build", str(tmp_path / "d1"), str(tmp_path / "d2"), "--out", str(tmp_path / "ds"),
                     "--unreviewed", "drop"]) == 0  # fmt: skip
    data = load_training_dataset(tmp_path / "ds", check_images=False)
    scores = {
        (r["source"], r["id"]): r["gt_score"] for r in data.select_columns(["source", "id", "gt_score"])
    }
    assert scores[("alpha", "p4")] == pytest.approx(1 + 4 * 50 / 100)
    assert scores[("beta", "p4")] == pytest.approx(1 + 50 / 25)
    assert (
        cli.main(
            ["data", "ingest", "--labels", str(source / "meta.json"), "--out", str(tmp_path / "x"), "--quiet"]
        )
        == 1
    )  # fmt: skip  (no --mos-range)
    assert "mos-range" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "value"),
    [("noise_std", -5.0), ("blur_radius", 0.0), ("jpeg_quality", 0), ("jpeg_quality", 120), ("jpeg_passes", 0),
     ("darken_factor", 1.5), ("darken_factor", -0.1)],
)  # fmt: skip
def test_out_of_range_degradation_parameters_are_refused(field, value):
    from qhawkeye.data.pairs import DegradeConfig

    with pytest.raises(ValueError, match=rf"{field} = {value!r} must be"):
        DegradeConfig(**{field: value})


def test_empty_label_file_is_an_error_and_writes_nothing(source, tmp_path):
    (source / "meta.json").write_text("[]")
    with pytest.raises(ValueError, match=r"meta.json holds no rows: nothing to ingest"):
        _ingest(source, tmp_path / "ingest")
    assert not (tmp_path / "ingest").exists()
    assert cli.main(["data", "ingest", "--labels", str(source / "meta.json"), "--mos-range", "0", "100",
                     "--data-root", str(source), "--out", str(tmp_path / "ingest")]) != 0  # fmt: skip


# ------------------------------------------------------------------------ records are checked where read


def _stage_with(tmp_path: Path, source: Path, edit) -> Path:
    """A real ingest -> degrade chain whose degrade manifest is then edited by ``edit(lines)``."""
    _ingest(source, tmp_path / "ingest")
    run_degrade(tmp_path / "ingest", tmp_path / "degrade", DegradeConfig(workers=1), progress=False)
    manifest = tmp_path / "degrade" / "manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text(
        "".join(line if isinstance(line, str) else json.dumps(line) + "\n" for line in edit(lines))
    )
    return tmp_path / "degrade"


def _set(n: int, **fields):
    def edit(lines):
        lines[n] = {**lines[n], **fields}
        return lines

    return edit


def _drop(n: int, key: str):
    def edit(lines):
        lines[n] = {k: v for k, v in lines[n].items() if k != key}
        return lines

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set(2, gt_score="4.5"), r"manifest.jsonl:3: field 'gt_score' must be int or float, got str"),
        (
            _set(1, gt_score=float("nan")),
            r"manifest.jsonl:2: field 'gt_score' must be a finite number in \[1, 5\]",
        ),
        (_set(0, gt_score=7.0), r"manifest.jsonl:1: field 'gt_score' must be a finite number in \[1, 5\]"),
        (_drop(4, "degraded"), r"manifest.jsonl:5: record 'p4' lacks \['degraded'\]"),
        (_set(3, group_id=["g"]), r"manifest.jsonl:4: field 'group_id' must be str, got list"),
        (_set(5, group_id="meta/p2"), r"manifest.jsonl:6: duplicate group_id 'meta/p2' \(first on line 3\)"),
        (_set(6, id="p0"), r"manifest.jsonl:7: duplicate id 'p0' \(first on line 1\)"),
        (
            lambda lines: lines[:3] + ["[1, 2]\n"] + lines[3:],
            r"manifest.jsonl:4: a record must be a JSON object",
        ),
        (lambda lines: lines[:2] + ['{"id": "x",\n'], r"manifest.jsonl:3: not valid JSON"),
    ],
)
def test_a_bad_manifest_is_one_clear_error_and_nothing_is_written(source, tmp_path, edit, message):
    stage = _stage_with(tmp_path, source, edit)
    steps = [lambda: run_build([stage], tmp_path / "built", "keep")]
    if "lacks" not in message:  # a record without a degraded copy is fine input for degrade, not for build
        steps.append(lambda: run_degrade(stage, tmp_path / "again", DegradeConfig(workers=1), progress=False))
    for step in steps:
        with pytest.raises(ValueError, match=message):
            step()
    assert not (tmp_path / "again").exists() and not (tmp_path / "built").exists()
    code = cli.main(["data", "build", str(stage), "--out", str(tmp_path / "built"), "--unreviewed", "keep"])
    assert code == 1 and not (tmp_path / "built").exists()


def test_a_label_file_where_a_stage_folder_belongs_is_named(source, tmp_path):
    with pytest.raises(ValueError, match=r"meta.json: this is not a stage manifest.*qhawkeye data ingest"):
        run_degrade(source / "meta.json", tmp_path / "degrade", DegradeConfig(workers=1), progress=False)
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "manifest.jsonl").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match="not a UTF-8 text file"):
        run_degrade(tmp_path / "stage", tmp_path / "degrade", DegradeConfig(workers=1), progress=False)


def test_a_stage_refuses_to_resume_from_another_input(source, tmp_path):
    _ingest(source, tmp_path / "ingest")
    run_degrade(tmp_path / "ingest", tmp_path / "degrade", DegradeConfig(workers=1), progress=False)
    before = _tree_digest(tmp_path / "degrade")
    rows = json.loads((source / "meta.json").read_text())[:5]  # a different set of originals
    (source / "other.json").write_text(json.dumps(rows))
    config = IngestConfig(labels=str(source / "other.json"), mos_range=(0, 100), data_root=str(source))
    run_ingest(config, tmp_path / "ingest2", progress=False)
    with pytest.raises(FileExistsError, match=r"made from another input .*ingest/manifest.jsonl.*ingest2"):
        run_degrade(tmp_path / "ingest2", tmp_path / "degrade", DegradeConfig(workers=1), progress=False)
    assert _tree_digest(tmp_path / "degrade") == before
    run_degrade(
        tmp_path / "ingest", tmp_path / "degrade", DegradeConfig(workers=1), progress=False
    )  # same: ok


def test_paths_from_manifests_and_labels_stay_inside_the_recorded_folders(source, tmp_path):
    secret = tmp_path / "secret.png"
    _photo(99).save(secret)
    stage = _stage_with(tmp_path, source, _set(1, degraded=str(secret)))
    with pytest.raises(
        ValueError, match=r"'p1': degraded .*secret.png.* lies outside the folders its stages recorded"
    ):
        run_build([stage], tmp_path / "built", "keep")
    assert not (tmp_path / "built").exists()
    rows = json.loads((source / "meta.json").read_text())
    rows[0]["images"] = ["../../secret.png"]
    (source / "meta.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=r"p0.*leads outside the card's image_root"):
        _ingest(source, tmp_path / "ingest-escape")


def test_ingest_refuses_to_rewrite_its_folder_from_other_labels(source, tmp_path):
    _ingest(source, tmp_path / "ingest")
    before = _tree_digest(tmp_path / "ingest")
    _ingest(source, tmp_path / "ingest")  # the same labels again: fine, same result
    assert _tree_digest(tmp_path / "ingest") == before
    rows = json.loads((source / "meta.json").read_text())
    rows[0]["gt_score"] = 99.0
    (source / "meta.json").write_text(json.dumps(rows))
    with pytest.raises(FileExistsError, match="other ingest parameters"):
        _ingest(source, tmp_path / "ingest")
    assert _tree_digest(tmp_path / "ingest") == before
