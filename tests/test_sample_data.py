"""The bundled LIVE-Wild photos and the synthetic SSIM-labelled IQA set built from them.

The synthetic set is built from 4 of the 32 photos (64 images) to stay fast; on all 32 photos the same checks
hold (the module docstring of ``qhawkeye.sample_data.synthetic`` gives the figures).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from qhawkeye import sample_data
from qhawkeye.labels import load_card_file, load_items
from qhawkeye.sample_data.synthetic import (
    S0,
    SSIM_SETTINGS,
    level_values,
    make_synthetic_iqa,
    ssim,
    ssim_to_label,
)

LIVEC = Path(__file__).resolve().parents[2] / "shared" / "data" / "livec"  # present in CI, not for users
N_PHOTOS = 4


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    result = make_synthetic_iqa(root / "set", photos=N_PHOTOS, seed=3)
    return result, root


def _rows(result: dict) -> dict[str, list[dict]]:
    return {split: json.loads(Path(result[split]).read_text()) for split in ("train", "test")}


# ---------------------------------------------------------------------------------------------- bundle


def test_bundle_holds_32_small_photos_with_their_mos_licence_and_notice():
    photos, mos = sample_data.photos(), sample_data.photo_mos()
    assert len(photos) == 32 and sorted(p.name for p in photos) == sorted(mos)
    for path in photos:
        with Image.open(path) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (192, 192))
    assert all(0 <= m <= 100 for m in mos.values()) and min(mos.values()) < 10 and max(mos.values()) > 85
    total = sum(f.stat().st_size for f in sample_data.HERE.iterdir() if f.is_file())
    assert total < 3_000_000
    licence = sample_data.license_path().read_text()
    assert "COPYRIGHT NOTICE STARTS WITH THIS LINE" in licence and "Ghadiyaram" in licence
    if (LIVEC / sample_data.LICENSE).is_file():
        assert licence == (LIVEC / sample_data.LICENSE).read_text()  # verbatim
    notice = sample_data.notice_path().read_text()
    entries = json.loads((sample_data.HERE / sample_data.PHOTOS_JSON).read_text())
    assert all(f"| {e['file']} | {e['source_file']} |" in notice for e in entries)
    assert "Lanczos" in notice and "IEEE Transactions on Image Processing" in notice


# ---------------------------------------------------------------------------------------------- ssim


def test_ssim_of_two_flat_images_is_the_hand_computed_luminance_term():
    # Flat images have no variance: SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1), C1 = (0.01 * 255)^2 = 6.5025;
    # mx = 100, my = 50: (10000 + 6.5025) / (12500 + 6.5025) = 0.800099948...
    a, b = Image.new("RGB", (32, 32), (100, 100, 100)), Image.new("RGB", (32, 32), (50, 50, 50))
    assert ssim(a, b) == pytest.approx(10006.5025 / 12506.5025, rel=1e-9)


def test_ssim_agrees_with_skimage_and_is_one_on_identical_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 48), dtype=np.uint8)
    y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8)
    expected = structural_similarity(x.astype(float), y.astype(float), **SSIM_SETTINGS)
    assert ssim(Image.fromarray(x), Image.fromarray(y)) == pytest.approx(expected, abs=1e-12)
    photo = Image.open(sample_data.photos()[0])
    assert ssim(photo, photo.copy()) == 1.0
    with pytest.raises(ValueError, match="one size"):
        ssim(photo, photo.resize((100, 100)))


def test_level_table_and_label_map():
    assert level_values("noise", 4) == [3.0, 8.1, 22.0, 60.0]
    assert level_values("blur", 4) == [0.5, 1.1, 2.6, 6.0]
    assert level_values("jpeg", 4) == [60, 22, 8, 3]
    assert level_values("darken", 4) == [0.9, 0.55, 0.33, 0.2]
    assert ssim_to_label(1.0) == 5.0 and ssim_to_label(S0) == 1.0 and ssim_to_label(-0.2) == 1.0
    assert ssim_to_label((1 + S0) / 2) == 3.0
    with pytest.raises(ValueError, match="did you mean 'noise'"):
        level_values("nosie", 4)


# ---------------------------------------------------------------------------------------------- set


def test_labels_are_ssim_on_1_to_5_and_fall_with_the_level(built):
    result, _ = built
    rows = [r for split in _rows(result).values() for r in split]
    assert len(rows) == N_PHOTOS * 4 * 4
    by_pair = defaultdict(list)
    for r in rows:
        assert 1.0 <= r["gt_score"] <= 5.0 and r["gt_score"] == ssim_to_label(r["ssim"])
        assert (Path(result["out_dir"]) / r["images"][0]).is_file()
        by_pair[(r["source_photo"], r["dist_type"])].append(r)
    assert len(by_pair) == N_PHOTOS * 4
    for pair in by_pair.values():
        pair.sort(key=lambda r: r["level"])
        assert [r["level"] for r in pair] == [1, 2, 3, 4]
        ssims, labels = [r["ssim"] for r in pair], [r["gt_score"] for r in pair]
        assert np.all(np.diff(ssims) < 0), pair  # stronger -> lower SSIM
        assert np.all(np.diff(labels) <= 0), pair  # ties only at the floor 1.0
    assert "not human opinion scores" in Path(result["readme"]).read_text()
    licence = Path(result["out_dir"]) / sample_data.LICENSE
    assert licence.read_bytes() == sample_data.license_path().read_bytes()


def test_split_is_by_photo(built):
    result, _ = built
    rows = _rows(result)
    train, test = ({r["source_photo"] for r in rows[s]} for s in ("train", "test"))
    assert train and test and not train & test
    assert train | test == {p.name for p in sample_data.photos()[:N_PHOTOS]}
    assert result["summary"]["photos"] == {
        "train": sorted(train, key=_order),
        "test": sorted(test, key=_order),
    }


def _order(name: str) -> int:
    return [p.name for p in sample_data.photos()].index(name)


def test_card_loads_the_test_split(built):
    result, _ = built
    card = load_card_file(result["card_test"])
    items = load_items(card)
    test = _rows(result)["test"]
    assert (card.mos_range, card.lower_better, card.type_column) == ((1.0, 5.0), False, "dist_type")
    assert [i.id for i in items] == [r["id"] for r in test]
    assert [i.label for i in items] == [r["gt_score"] for r in test]
    assert {i.dist_type for i in items} == {"noise", "blur", "jpeg", "darken"}
    assert all(i.image.is_file() for i in items)


def test_build_is_deterministic_reused_and_refuses_other_parameters(built):
    result, root = built
    out = Path(result["out_dir"])
    before = _snapshot(out)
    again = make_synthetic_iqa(out, photos=N_PHOTOS, seed=3)
    assert again["reused"] and not result["reused"] and again["summary"] == result["summary"]
    assert _snapshot(out) == before
    twin = make_synthetic_iqa(root / "twin", photos=N_PHOTOS, seed=3)
    assert _snapshot(Path(twin["out_dir"])) == before  # same bytes, file for file
    with pytest.raises(FileExistsError, match="other parameters"):
        make_synthetic_iqa(out, photos=N_PHOTOS, seed=4)
    (root / "foreign").mkdir()
    (root / "foreign" / "x.txt").write_text("x")
    with pytest.raises(FileExistsError, match="holds no synthetic.json"):
        make_synthetic_iqa(root / "foreign", photos=N_PHOTOS, seed=3)
    assert sorted(p.name for p in root.iterdir()) == ["foreign", "set", "twin"]  # no temp folders left


def test_other_seed_gives_other_split_and_bad_arguments_say_what_to_do(tmp_path):
    from qhawkeye.sample_data.synthetic import split_photos

    names = [p.name for p in sample_data.photos()]
    splits = {seed: split_photos(names, 0.25, seed) for seed in (0, 1)}
    assert splits[0] != splits[1] and all(len(test) == 8 for _, test in splits.values())
    for kwargs, message in [
        ({"types": ("noise", "fog")}, "unknown distortion type 'fog'"),
        ({"levels": 1}, "levels must be in"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"photos": 40}, "photos must be in"),
    ]:
        with pytest.raises(ValueError, match=message):
            make_synthetic_iqa(tmp_path / "bad", **kwargs)
    assert not (tmp_path / "bad").exists()


def test_atomic_outputs_get_the_users_umask_not_mkstemps_0600(tmp_path):
    import os
    import stat

    from qhawkeye.provenance import write_json_atomic

    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        built = make_synthetic_iqa(tmp_path / "set", photos=2, levels=2, types=("blur",))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(built["out_dir"].stat().st_mode) == 0o755
