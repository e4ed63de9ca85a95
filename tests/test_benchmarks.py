import json
import logging
from pathlib import Path

import pytest

from qhawkeye.labels import (
    BenchmarkCard,
    builtin_cards,
    get_card,
    load_card_file,
    load_items,
    map_label,
    resolve_card,
)

REPO = Path(__file__).resolve().parents[1]
LIVEC_CARD = REPO / "configs" / "benchmarks" / "livec_700.yaml"
LIVEC_DATA = REPO.parent / "shared" / "data" / "livec"  # where CI keeps the 700-image LIVE-Wild subset


def _card(label_file, **overrides) -> BenchmarkCard:
    """A deqa card on [0, 100], higher better; relative paths resolve against the label file's folder."""
    label_file = Path(label_file)
    fields = dict(name="toy", label_file=label_file, image_root=".", format="deqa", mos_range=(0, 100))
    fields.update(lower_better=False, base_dir=label_file.parent if label_file.is_absolute() else None)
    return BenchmarkCard(**{**fields, **overrides})


def _deqa(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def _row(ident, score, image=None):
    return {"id": ident, "images": [image or f"images/{ident}.png"], "gt_score": score}


@pytest.mark.parametrize(
    "score, mos_range, lower_better, expected",
    [
        (0, (0, 100), False, 1.0),
        (100, (0, 100), False, 5.0),
        (50, (0, 100), False, 3.0),
        (82.9107, (0, 100), False, 1 + 4 * 0.829107),  # first row of the LIVE-Wild meta: 4.316428
        (0.0, (0, 1), True, 5.0),  # CSIQ-style DMOS: 0 = no visible distortion = best
        (1.0, (0, 1), True, 1.0),
        (0.25, (0, 1), True, 4.0),  # 1 + 4 * (1 - 0.25) / 1
        (3.7, (1, 5), False, 3.7),  # already on [1, 5]: identity
        (4.5, (0, 9), False, 3.0),  # TID2013-style 0-9 MOS: 1 + 4 * 4.5 / 9
    ],
)
def test_map_label_hand_values(score, mos_range, lower_better, expected):
    assert map_label(score, mos_range, lower_better) == pytest.approx(expected)


@pytest.mark.skipif(not (LIVEC_DATA / "meta.json").is_file(), reason="needs ../shared/data/livec")
def test_real_livec_meta_loads_through_its_card():
    card = resolve_card(LIVEC_CARD, data_root=LIVEC_DATA)
    items = load_items(card)
    assert len(items) == 700 and len({item.id for item in items}) == 700
    assert all(1.0 <= item.label <= 5.0 for item in items)
    first = next(item for item in items if item.id == "10")  # {"id": "10", "gt_score": 82.9107}
    assert first.label_raw == 82.9107 and first.label == pytest.approx(1 + 4 * 82.9107 / 100)
    assert first.image == LIVEC_DATA.absolute() / "images" / "10.png"
    assert all(item.image.is_file() for item in items)


def test_user_card_paths_resolve_against_its_folder_without_data_root(tmp_path):
    _deqa(tmp_path / "meta.json", [_row("a", 10), _row("b", 90)])
    card_file = tmp_path / "card.yaml"
    card_file.write_text(
        "name: mine\nlabel_file: meta.json\nimage_root: .\nformat: deqa\nmos_range: [0, 100]\n"
        "lower_better: false\n"
    )
    items = load_items(load_card_file(card_file))
    assert [item.label for item in items] == pytest.approx([1.4, 4.6])
    assert items[0].image == tmp_path / "images" / "a.png"
    # the livec card kept in the repository only works with --data-root: it says so
    with pytest.raises(FileNotFoundError, match="--data-root"):
        load_items(load_card_file(LIVEC_CARD))


def test_label_outside_the_card_range_names_file_row_and_value(tmp_path):
    path = _deqa(tmp_path / "m.json", [_row("a", 50), _row("b", 101.5)])
    with pytest.raises(ValueError) as err:
        load_items(_card(path))
    message = str(err.value)
    assert str(path) in message and "entry 1" in message and "'b'" in message and "101.5" in message


def test_duplicate_id_and_non_numeric_score(tmp_path):
    path = _deqa(tmp_path / "dup.json", [_row("a", 50), _row("b", 60), _row("a", 70)])
    with pytest.raises(ValueError, match=r"entry 2: duplicate id 'a' \(first at entry 0\)"):
        load_items(_card(path))
    path = _deqa(tmp_path / "nan.json", [_row("a", "good")])
    with pytest.raises(ValueError, match="entry 0 \\(id 'a'\\): non-numeric score 'good'"):
        load_items(_card(path))


def test_missing_key_column_and_file(tmp_path):
    path = _deqa(tmp_path / "m.json", [{"id": "a", "images": ["x.png"], "gt_scor": 3}])
    with pytest.raises(ValueError, match="no 'gt_score' key/column.*Did you mean 'gt_scor'"):
        load_items(_card(path))
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("image,mos\nx.png,3\n")
    card = _card(csv_path, format="csv", id_column=None, image_column="image", score_column="MOS")
    with pytest.raises(ValueError, match="header has no 'MOS' column.*Did you mean 'mos'"):
        load_items(card)
    with pytest.raises(FileNotFoundError, match="label file .*absent.json not found"):
        load_items(_card(tmp_path / "absent.json"))


def test_csv_card_with_type_column_and_lower_better_labels(tmp_path):
    (tmp_path / "meta.csv").write_text(
        "dis_img_path,dmos,dist\nd/a.png,0.25,blur\nd/b.png,0.5,\nd/c.png,1,jpeg\n"
    )
    card = _card(
        "meta.csv",
        format="csv",
        id_column=None,
        image_column="dis_img_path",
        score_column="dmos",
        type_column="dist",
        mos_range=(0, 1),
        lower_better=True,
        image_root="imgs",
    )
    items = load_items(card, data_root=tmp_path)
    assert [item.id for item in items] == [
        "d/a.png",
        "d/b.png",
        "d/c.png",
    ]  # no id column: the path is the id
    assert [item.label for item in items] == pytest.approx([4.0, 3.0, 1.0])
    assert [item.dist_type for item in items] == ["blur", None, "jpeg"]
    assert items[0].image == tmp_path / "imgs" / "d" / "a.png"


def test_jsonl_card(tmp_path):
    lines = [
        '{"name": "p1", "file": "p1.jpg", "score": 2.5}',
        "",
        '{"name": "p2", "file": "p2.jpg", "score": 4}',
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    fields = dict(
        format="jsonl", id_column="name", image_column="file", score_column="score", mos_range=(1, 5)
    )
    items = load_items(_card(tmp_path / "m.jsonl", **fields))
    assert [(item.id, item.label, item.image.name) for item in items] == [
        ("p1", 2.5, "p1.jpg"),
        ("p2", 4.0, "p2.jpg"),
    ]
    (tmp_path / "bad.jsonl").write_text('{"name": "p1"\n')
    with pytest.raises(ValueError, match="line 1: not valid JSON"):
        load_items(_card(tmp_path / "bad.jsonl", **fields))


def test_type_from_filename_in_builtin_cards(tmp_path):
    # a stand-in Data-DeQA-Score folder with DeQA-style metas: "image" (a string) relative to the data root
    metas = {
        "kadid10k": ("KADID10K/metas/test_kadid_2k.json", ["KADID10K/images/I01_03_04.png", "I81_25_05.png"]),
        "tid2013": ("TID2013/metas/test_tid2013_3k.json", ["TID2013/images/distorted_images/i01_08_5.bmp"]),
        "csiq": ("CSIQ/metas/test_csiq_866.json", ["CSIQ/images/dst_imgs/awgn/1600.AWGN.1.png"]),
    }
    for name, (meta, images) in metas.items():
        rows = [
            {"id": f"{i}", "image": image, "gt_score": 7.0, "gt_score_norm": 2.0}
            for i, image in enumerate(images)
        ]
        _deqa(tmp_path / meta, rows)
        items = load_items(resolve_card(name, data_root=tmp_path))
        assert items[0].image == tmp_path / images[0] and items[0].label == 2.0
    kadid = load_items(get_card("kadid"), data_root=tmp_path)
    assert [item.dist_type for item in kadid] == ["03", "25"]
    assert load_items(get_card("tid2013"), data_root=tmp_path)[0].dist_type == "08"
    assert load_items(get_card("csiq"), data_root=tmp_path)[0].dist_type == "awgn"


def test_type_from_filename_user_regex_and_unmatched_warning(tmp_path, caplog):
    path = _deqa(tmp_path / "m.json", [_row("1", 10, "I01_03_04.png"), _row("2", 20, "ref.png")])
    with caplog.at_level(logging.WARNING):
        items = load_items(_card(path, type_from_filename=r"I\d+_(\d+)_\d+"))
    assert [item.dist_type for item in items] == ["03", None]
    assert "1 of 2 image paths do not match" in caplog.text
    with pytest.raises(ValueError, match="needs a group"):
        _card(path, type_from_filename=r"I\d+")
    with pytest.raises(ValueError, match="not both"):
        _card(path, type_from_filename=r"I(\d+)", type_column="dist")


def test_warns_when_labels_look_already_mapped(tmp_path, caplog):
    path = _deqa(tmp_path / "m.json", [_row("a", 3.2), _row("b", 4.1), _row("c", 1.0)])
    with caplog.at_level(logging.WARNING):
        items = load_items(_card(path))
    assert "labels look already mapped" in caplog.text and "mos_range: [1, 5]" in caplog.text
    assert items[0].label == pytest.approx(1.128)  # mapped anyway: the card decides, the warning informs
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_items(_card(path, mos_range=(1, 5)))
    assert "already mapped" not in caplog.text


def test_unknown_names_and_keys(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'konq'.*did you mean 'koniq'"):
        get_card("konq")
    card_file = tmp_path / "card.yaml"
    card_file.write_text(
        "name: x\nlabel_file: m.json\nimage_root: .\nformat: deqa\nmos_rang: [0, 100]\nlower_better: false\n"
    )
    with pytest.raises(ValueError, match="unknown benchmark card key 'mos_rang'.*did you mean 'mos_range'"):
        load_card_file(card_file)
    with pytest.raises(ValueError, match="did you mean 'deqa'"):
        _card("m.json", format="dqa")
    with pytest.raises(ValueError, match="lo < hi"):
        _card("m.json", mos_range=(100, 0))
    with pytest.raises(FileNotFoundError, match="built-in name"):
        resolve_card(tmp_path / "absent.yaml")


def test_builtin_cards_need_a_data_root():
    cards = builtin_cards()
    assert sorted(cards) == ["agiqa3k", "csiq", "kadid10k", "koniq", "livewild", "pipal", "spaq", "tid2013"]
    assert get_card("LIVEC") is cards["livewild"]
    assert all(card.description and card.citation and card.base_dir is None for card in cards.values())
    with pytest.raises(
        ValueError, match="pass --data-root pointing at the folder holding the DeQA-Score data"
    ):
        resolve_card("koniq")
    resolved = resolve_card("koniq", data_root="/data/Data-DeQA-Score")
    assert resolved.label_file == Path("/data/Data-DeQA-Score/KONIQ/metas/test_koniq_2k.json")


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "x" * 200])
def test_card_names_that_are_not_file_names_are_refused(tmp_path, name):
    from qhawkeye.labels import load_card_file

    card = tmp_path / "card.yaml"
    card.write_text(json.dumps({"name": name, "label_file": "l.json", "image_root": ".", "format": "deqa", "mos_range": [1, 5],
                                "lower_better": False}))  # fmt: skip
    with pytest.raises(ValueError, match="card name"):
        load_card_file(card)


@pytest.mark.parametrize(
    "text",
    ["\ufeffimage,mos\na.png,25\nb.png,75\n",  # a spreadsheet's byte-order mark
     "image;mos\na.png;25\nb.png;75\n",  # European spreadsheets: semicolons
     "image\tmos\na.png\t25\nb.png\t75\n"],  # tab-separated
    ids=["bom", "semicolon", "tab"],
)  # fmt: skip
def test_csv_exports_from_spreadsheets_read_as_written(tmp_path, text):
    (tmp_path / "meta.csv").write_bytes(text.encode("utf-8"))
    card = _card("meta.csv", format="csv", id_column=None, image_column="image", score_column="mos")
    items = load_items(card, data_root=tmp_path)
    assert [item.id for item in items] == ["a.png", "b.png"]
    assert [item.label for item in items] == pytest.approx([2.0, 4.0])
