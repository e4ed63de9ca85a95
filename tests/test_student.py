"""The student scorer (issue 12): backbone, head, distillation, and the student through every scoring path.

The backbone is checked against the reference architecture package (a test dependency); distillation runs on
real images (the bundled LIVE-Wild photos, distorted at graded levels by the project's own degradations) and on a
real score file written by ``qhawkeye score``; the scorer is exercised through the CLI, ``evaluate``, the HTTP
server and the data filter. The shipped default is loaded offline and its identity recomputed from its data.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from scipy.stats import spearmanr
from server_utils import qhawkeye_serve

from qhawkeye import cli
from qhawkeye.student import DEFAULT_STUDENT, student_folder
from qhawkeye.student.backbone import load_backbone, weights_path
from qhawkeye.student.config import DistillConfig
from qhawkeye.student.distill import distill, planned_identity, teacher_rows
from qhawkeye.student.head import fit_ridge, load_student

REPO = Path(__file__).resolve().parents[1]
LIVEC = REPO.parent / "shared" / "data" / "livec"
SAMPLES = REPO / "src" / "qhawkeye" / "sample_data"


def _photos(n: int) -> list[Path]:
    return sorted(SAMPLES.glob("livec_*.png"))[:n]


def _blur_set(tmp: Path, photos: list[Path], levels=(0, 1, 2, 4)) -> list[dict]:
    """Each photo blurred at graded radii; label 5 (sharp) .. 2 (most blurred): visible without a reference."""
    rows = []
    (tmp / "img").mkdir(parents=True, exist_ok=True)
    for photo in photos:
        image = Image.open(photo).convert("RGB")
        for n, radius in enumerate(levels):
            path = tmp / "img" / f"{photo.stem}_b{radius}.png"
            (image.filter(ImageFilter.GaussianBlur(radius)) if radius else image).save(path)
            rows.append({"id": path.stem, "images": [f"img/{path.name}"], "gt_score": 5.0 - n})
    return rows


def _card(tmp: Path, rows: list[dict], name: str) -> Path:
    (tmp / f"{name}.json").write_text(json.dumps(rows))
    card = {"name": name, "label_file": f"{name}.json", "image_root": ".", "format": "deqa",
            "score_column": "gt_score", "mos_range": [1, 5], "lower_better": False}  # fmt: skip
    (tmp / f"{name}.yaml").write_text(json.dumps(card))
    return tmp / f"{name}.yaml"


# ---------------------------------------------------------------------------------------------- backbone


def test_backbone_matches_the_reference_implementation():
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights_path())).eval()
    taps = {}
    ends = [0, 2, 4, 7, 10, 14, 15]
    for i in ends:
        reference._blocks[i].register_forward_hook(lambda m, a, out, i=i: taps.__setitem__(i, out))
    ours, folded = load_backbone(fold=False), load_backbone()
    torch.manual_seed(0)
    for shape in [(2, 3, 96, 128), (1, 3, 75, 61)]:  # even and odd sizes
        x = torch.randn(shape)
        with torch.inference_mode():
            head = reference.extract_features(x)
            expected = [taps[i] for i in ends] + [head]
            exact, fast = ours.taps(x), folded.taps(x)
        for e, a, f in zip(expected, exact, fast, strict=True):
            assert e.shape == a.shape
            assert torch.equal(e, a)  # same operations in the same order
            assert torch.allclose(e, f, atol=2e-4)  # batch norm folded into the convolutions


def test_tampered_weights_are_refused(tmp_path):
    bad = tmp_path / "w.pth"
    data = bytearray(weights_path().read_bytes())
    data[-100] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not the pinned EfficientNet-Lite0 weights"):
        load_backbone(bad)


# ---------------------------------------------------------------------------------------------- head


def test_ridge_recovers_a_linear_signal_and_respects_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 30))
    y = x[:, 0] - 0.5 * x[:, 1] + 0.05 * rng.normal(size=120)
    groups = [str(i) for i in range(120)]
    fit = fit_ridge(x, y, np.ones(120), groups)
    assert fit.cv["srcc"] > 0.95
    test = rng.normal(size=(50, 30))
    assert spearmanr(fit.predict(test), test[:, 0] - 0.5 * test[:, 1]).statistic > 0.95
    # half the rows carry wrong targets: with weight ~0 they do not pull the fit, with weight 1 they do
    noisy = y.copy()
    noisy[::2] = rng.normal(size=60) * 3
    w = np.where(np.arange(120) % 2 == 0, 1e-6, 1.0)
    good = spearmanr(fit_ridge(x, noisy, w, groups).predict(test), test[:, 0] - 0.5 * test[:, 1]).statistic
    bad = spearmanr(
        fit_ridge(x, noisy, np.ones(120), groups).predict(test), test[:, 0] - 0.5 * test[:, 1]
    ).statistic
    assert good > 0.9 and good > bad + 0.05


def test_too_few_images_for_the_folds_is_an_error():
    with pytest.raises(ValueError, match="too few for 5-fold"):
        fit_ridge(np.zeros((8, 3)), np.arange(8.0), np.ones(8), ["a", "b"] * 4)


# ---------------------------------------------------------------------------------------------- distill


@pytest.fixture(scope="module")
def blur_student(tmp_path_factory):
    """A student distilled from labels: 8 photos x 4 blur levels, with the 4 photos after them held out."""
    tmp = tmp_path_factory.mktemp("blur")
    photos = _photos(12)
    card = _card(tmp, _blur_set(tmp, photos[:8]), "blur_train")
    held = _blur_set(tmp / "held", photos[8:])
    summary = distill(DistillConfig(out=str(tmp / "student"), labels=[str(card)], folds=4), progress=False)
    return tmp, summary, held


def test_distill_from_labels_learns_what_it_sees(blur_student):
    tmp, summary, held = blur_student
    folder = tmp / "student"
    meta = json.loads((folder / "student.json").read_text())
    assert meta["identity"] == summary["identity"] and len(meta["identity"]) == 64
    assert meta["training"]["rows"] == 32 and meta["training"]["sources"][0]["card"] == "blur_train"
    from qhawkeye.scoring import create_scorer

    scorer = create_scorer(str(folder))
    results = scorer.score_batch([str(tmp / "held" / r["images"][0]) for r in held])
    assert all(r.status == "ok" and 1 <= r.score <= 5 for r in results)
    srcc = spearmanr([r.score for r in results], [r["gt_score"] for r in held]).statistic
    assert srcc > 0.8, srcc  # held-out photos: sharper scores higher


def test_distill_resumes_from_its_feature_cache_and_matches_a_clean_run(blur_student, tmp_path, monkeypatch):
    src, _, _ = blur_student
    config = DistillConfig(
        out=str(tmp_path / "s"), labels=[str(src / "blur_train.yaml")], folds=4, batch_size=2
    )
    from qhawkeye.student import distill as distill_module

    calls = {"n": 0}
    real_add = distill_module.FeatureCache.add

    def crash_on_second_part(self, keys, features):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        real_add(self, keys, features)

    monkeypatch.setattr(distill_module.FeatureCache, "add", crash_on_second_part)
    with pytest.raises(KeyboardInterrupt):
        distill(config, progress=False)
    assert not (tmp_path / "s").exists()  # nothing half-written
    monkeypatch.setattr(distill_module.FeatureCache, "add", real_add)
    extracted = []
    real_extract = distill_module.extract

    def counting_extract(rows_by_key, cache, *args):
        extracted.append(sum(k not in cache.features for k in rows_by_key))
        return real_extract(rows_by_key, cache, *args)

    monkeypatch.setattr(distill_module, "extract", counting_extract)
    resumed = distill(config, progress=False)
    assert extracted == [32 - 8]  # the first run saved one part of 8 images before it was stopped
    clean = distill(DistillConfig(out=str(tmp_path / "clean"), labels=[str(src / "blur_train.yaml")], folds=4),
                    progress=False)  # fmt: skip
    assert resumed["identity"] == clean["identity"]
    a, b = load_student(tmp_path / "s"), load_student(tmp_path / "clean")
    assert np.allclose(a.fit.weight, b.fit.weight, atol=1e-6) and a.fit.alpha == b.fit.alpha


def test_distill_from_a_real_score_file(blur_student, tmp_path):
    """Teacher: the blur student scores unlabelled images with `qhawkeye score`; the new student learns from
    that file alone and ranks held-out images as the teacher does."""
    src, _, held = blur_student
    unlabelled = _blur_set(tmp_path / "u", _photos(20)[12:20])
    scores = tmp_path / "teacher.jsonl"
    code = cli.main(["score", str(tmp_path / "u" / "img"), "--model", str(src / "student"), "--out", str(scores),
                     "--quiet"])  # fmt: skip
    assert code == 0 and len(scores.read_text().splitlines()) == len(unlabelled)
    out = tmp_path / "pupil"
    assert (
        cli.main(["distill", "--teacher-scores", str(scores), "--out", str(out), "--folds", "4", "--quiet"])
        == 0
    )
    meta = json.loads((out / "student.json").read_text())
    (source,) = meta["training"]["sources"]
    assert source["kind"] == "teacher" and source["rows"] == len(unlabelled)
    assert source["teacher"]["model"] == str(src / "student")  # the sidecar names the teacher
    from qhawkeye.scoring import create_scorer

    paths = [str(src / "held" / r["images"][0]) for r in held]
    teacher = [r.score for r in create_scorer(str(src / "student")).score_batch(paths)]
    pupil = [r.score for r in create_scorer(str(out)).score_batch(paths)]
    assert spearmanr(teacher, pupil).statistic > 0.8


def test_teacher_rows_weights_paths_and_errors(tmp_path):
    image = tmp_path / "imgs" / "a.png"
    image.parent.mkdir()
    Image.new("RGB", (64, 64), (90, 90, 90)).save(image)
    rows = [
        {"id": "a", "path": "a.png", "score": 3.0, "status": "ok"},  # no spread: weight 1
        {"id": "b", "path": "a.png", "score": 3.5, "status": "ok", "uncertainty": 0.5},
        {"id": "c", "path": "a.png", "score": 4.0, "status": "ok", "std": 2.0},  # var 4 = max: floor
        {"id": "d", "path": "a.png", "score": None, "status": "parse_failure"},  # skipped, counted
    ]
    f = tmp_path / "t.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = DistillConfig(
        out=str(tmp_path / "o"), teacher_scores=[str(f)], teacher_image_root=str(image.parent)
    )
    got, sources = teacher_rows(config)
    assert [r.weight for r in got] == [1.0, 0.5, 0.05]
    assert sources[0]["skipped_not_ok"] == 1 and sources[0]["teacher"] is None
    unweighted, _ = teacher_rows(DistillConfig(**{**config.__dict__, "uncertainty_weighting": False}))
    assert [r.weight for r in unweighted] == [1.0, 1.0, 1.0]
    # the same as CSV
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("id,path,score,status,std,uncertainty\na,a.png,3.0,ok,,0.25\n")
    (row,), _ = teacher_rows(
        DistillConfig(out="o", teacher_scores=[str(csv_file)], teacher_image_root=str(image.parent))
    )
    assert row.weight == 0.75 and row.target == 3.0
    # relative paths without the root: the error names the file, the line and the flag to use
    with pytest.raises(
        FileNotFoundError, match=r"t\.jsonl: line 1: image .*a\.png not found; pass --teacher-image-root"
    ):
        teacher_rows(DistillConfig(out="o", teacher_scores=[str(f)]))
    f.write_text(json.dumps({"id": "a", "path": "a.png", "score": 7.5, "status": "ok"}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: score 7.5 is outside \[1, 5\]"):
        teacher_rows(config)
    f.write_text('{"nope": 1}\n')
    with pytest.raises(ValueError, match="line 1 has no id/score"):
        teacher_rows(config)


def test_distill_refuses_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="nothing to learn from"):
        DistillConfig(out="x")
    with pytest.raises(ValueError, match="max_pixels must be 0"):
        DistillConfig(out="x", labels=["c"], max_pixels=10)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(FileExistsError, match="already exists"):
        distill(DistillConfig(out=str(tmp_path / "full"), labels=["c"]))


def test_broken_student_folders_say_what_is_wrong(blur_student, tmp_path):
    src, _, _ = blur_student
    broken = tmp_path / "b"
    shutil.copytree(src / "student", broken)
    (broken / "head.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="head.safetensors not found"):
        load_student(broken)
    (broken / "student.json").write_text("{")
    with pytest.raises(ValueError, match="student.json: not valid JSON"):
        load_student(broken)


# ---------------------------------------------------------------------------------------------- scoring paths


def test_score_without_model_uses_the_default_student_and_says_so(tmp_path):
    photo = _photos(1)[0]
    sharp, blurred = tmp_path / "sharp.png", tmp_path / "blurred.png"
    shutil.copy(photo, sharp)
    Image.open(photo).filter(ImageFilter.GaussianBlur(3)).save(blurred)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "qhawkeye.cli", "score", str(tmp_path), "-q"], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = {r["id"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert rows["broken.jpg"]["status"] == "unreadable"
    assert {"id", "path", "score", "status", "std", "uncertainty", "parsed"} <= set(rows["sharp.png"])
    assert rows["sharp.png"]["score"] > rows["blurred.png"]["score"]
    assert f"scored by: {DEFAULT_STUDENT}" in proc.stderr and "livec_700" in proc.stderr


def test_the_shipped_default_loads_offline_with_its_notice():
    head = load_student(DEFAULT_STUDENT)
    assert head.spec.max_pixels == DistillConfig(out="x", labels=["c"]).max_pixels
    assert head.meta["training"]["sources"][0]["card"] == "livec_700"
    notice = (DEFAULT_STUDENT / "NOTICE").read_text()
    assert "LIVE" in notice and "Apache-2.0" in notice
    assert "COPYRIGHT NOTICE STARTS" in (DEFAULT_STUDENT / "LICENSE-LIVE-Challenge.txt").read_text()
    assert student_folder("default") == DEFAULT_STUDENT and student_folder("tiny") is None
    size = sum(f.stat().st_size for f in DEFAULT_STUDENT.iterdir())
    assert size < 200_000  # the package stays lean: the head only, the backbone weights are a dependency


@pytest.mark.skipif(not (LIVEC / "meta.json").is_file(), reason="needs ../shared/data/livec (CI has it)")
def test_the_shipped_default_identity_matches_its_rebuild_recipe():
    """The identity is computed from the rebuild script's inputs (every image's bytes and label, the settings):
    the shipped head was made from this data with these settings. The full rebuild (features and fit) runs in
    CI: `python scripts/build_default_student.py` compares predictions too."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_default_student as script
    finally:
        sys.path.pop(0)
    config = DistillConfig(out="unused", labels=[str(script.CARD)], data_root=str(LIVEC))
    assert planned_identity(config) == load_student(DEFAULT_STUDENT).identity


def test_evaluate_with_a_student(blur_student, tmp_path):
    src, _, held = blur_student
    card = _card(src / "held", held, "blur_held")
    out = tmp_path / "eval"
    args = ["evaluate", "--benchmarks", str(card), "--model", str(src / "student"), "--out", str(out),
            "--bootstrap", "0", "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model_kind"] == "student" and results["identity"]
    bench = results["benchmarks"]["blur_held"]
    assert bench["n"] == len(held) and bench["metrics"]["srcc"] > 0.8
    assert "Student:" in (out / "results.md").read_text()


def _png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.slow
def test_serve_a_student_over_http(tmp_path):
    photo = Image.open(_photos(1)[0]).convert("RGB")
    with qhawkeye_serve([], tmp_path / "serve.log") as url:
        body = {"images": [{"id": "sharp", "data": _png(photo)},
                           {"id": "blurred", "data": _png(photo.filter(ImageFilter.GaussianBlur(3)))},
                           {"id": "junk", "data": base64.b64encode(b"junk").decode()}]}  # fmt: skip
        status, reply = _post(url + "/v1/score", body)
        assert status == 200 and reply["model_kind"] == "student"
        sharp, blurred, junk = reply["results"]
        assert (
            sharp["status"] == "ok" and sharp["score"] > blurred["score"] and junk["status"] == "unreadable"
        )
        chat = {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _png(photo)}},
            {"type": "text", "text": "Rate the quality."}]}]}  # fmt: skip
        status, answer = _post(url + "/v1/chat/completions", chat)
        assert status == 200, answer
        assert answer["choices"][0]["message"]["content"] == f"<answer>{sharp['score']:.2f}</answer>"
        assert abs(answer["choices"][0]["qhawkeye"]["score"] - sharp["score"]) < 0.006
        chat["messages"][0]["content"] = [{"type": "text", "text": "no image"}]
        status, error = _post(url + "/v1/chat/completions", chat)
        assert status == 400 and error["error"]["code"] == "student_needs_one_image"


def test_the_filters_score_mode_with_the_default_student(tmp_path):
    """A fast pre-filter: a pair whose degraded image is heavily blurred is kept (the scores differ), a pair
    whose 'degraded' image is a copy of the original is flagged (no quality difference)."""
    from qhawkeye.data.manifest import read_records, write_records
    from qhawkeye.data.vlm_filter import FilterConfig, run_filter

    photo = _photos(1)[0]
    original = tmp_path / "o.png"
    shutil.copy(photo, original)
    Image.open(photo).filter(ImageFilter.GaussianBlur(6)).save(tmp_path / "blur.png")
    shutil.copy(photo, tmp_path / "same.png")
    records = [{"id": f"p{n}", "group_id": f"g{n}", "image": str(original), "gt_score": 3.0,
                "degraded": str(tmp_path / name), "degradation": "blur"} for n, name in enumerate(["blur.png", "same.png"])]  # fmt: skip
    stage = write_records(tmp_path / "degrade", records, "degrade", {"test": True}).parent
    summary = run_filter(
        stage, tmp_path / "filter", FilterConfig("score", model="default", threshold=0.3), progress=False
    )
    assert summary["complete"] and summary["pairs"] == 2
    flagged = {r["id"]: r["filter"]["flagged"] for r in read_records(tmp_path / "filter")}
    assert flagged == {"p0": False, "p1": True}
