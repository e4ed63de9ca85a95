"""Bad training data gets a clear error naming the folder, row and column; nothing trains on placeholders."""

import pytest
from datasets import Dataset, Features, Value, load_from_disk
from datasets import Image as ImageFeature
from PIL import Image

from qhawkeye.data.training_set import load_training_dataset, save_synthetic_training_set
from qhawkeye.prompts import build_messages

FEATURES = Features(
    {
        "image": ImageFeature(),
        "degraded_image": ImageFeature(),
        "gt_score": Value("float32"),
        "group_id": Value("string"),
    }
)


def _save(tmp_path, rows, features=FEATURES):
    path = tmp_path / "ds"
    Dataset.from_dict(rows, features=features).save_to_disk(str(path))
    return path


def _rows(n=3, score=3.0):
    img = Image.new("RGB", (32, 32), (120, 60, 30))
    return {
        "image": [img] * n,
        "degraded_image": [img] * n,
        "gt_score": [score] * n,
        "group_id": [f"g{i}" for i in range(n)],
    }


def test_synthetic_set_loads_with_prompt_and_pairs(paired_dataset_dir):
    data = load_training_dataset(paired_dataset_dir, degraded_column="degraded_image")
    assert len(data) == 8 and data[0]["prompt"] == build_messages()
    row = data[0]
    assert row["image"].size == row["degraded_image"].size and 1 <= row["gt_score"] <= 5


def test_existing_folder_is_never_overwritten(paired_dataset_dir):
    before = load_from_disk(str(paired_dataset_dir))._fingerprint
    with pytest.raises(FileExistsError):
        save_synthetic_training_set(paired_dataset_dir, n=2)
    assert load_from_disk(str(paired_dataset_dir))._fingerprint == before


def test_label_outside_range_names_the_row(tmp_path):
    rows = _rows()
    rows["gt_score"][1] = 72.5  # a raw 0-100 MOS that was never mapped
    with pytest.raises(ValueError, match=r"row 1 \(group_id='g1'\): gt_score=72.5 is not on \[1, 5\]"):
        load_training_dataset(_save(tmp_path, rows))


def test_missing_image_names_row_and_column(tmp_path):
    rows = _rows()
    rows["degraded_image"][2] = None
    path = _save(tmp_path, rows)
    load_training_dataset(path)  # fine while PAO's column is not required
    with pytest.raises(ValueError, match=r"row 2 \(group_id='g2'\): column 'degraded_image' has a missing"):
        load_training_dataset(path, degraded_column="degraded_image")


def test_unreadable_image_bytes(tmp_path):
    rows = _rows()
    rows["image"][0] = {"bytes": b"not an image at all", "path": "broken.jpg"}
    with pytest.raises(
        ValueError, match=r"row 0 \(group_id='g0'\): column 'image' has a missing or unreadable"
    ):
        load_training_dataset(_save(tmp_path, rows))


def test_empty_and_missing_columns_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        load_training_dataset(_save(tmp_path, {k: [] for k in _rows()}))
    other = tmp_path / "other"
    Dataset.from_dict(
        {"image": [Image.new("RGB", (8, 8))], "mos": [3.0]},
        features=Features({"image": ImageFeature(), "mos": Value("float32")}),
    ).save_to_disk(str(other))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['gt_score'\]"):
        load_training_dataset(other)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_training_dataset(tmp_path / "nowhere")


def test_a_repeated_group_id_is_refused(tmp_path):
    rows = _rows(4)
    rows["group_id"][3] = "g1"  # a pair copied, or an image joined to another image's degraded copy
    with pytest.raises(ValueError, match=r"row 3: group_id 'g1' repeats row 1's"):
        load_training_dataset(_save(tmp_path, rows))
