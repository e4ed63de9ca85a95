"""The one image loader (qhawkeye.images) on real files of every awkward kind, and the runs that use it:
one bad image is one ``unreadable`` result with its reason, never the end of a run."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image, ImageCms

from qhawkeye.images import (
    ImageLimits,
    UnreadableImage,
    decode_image,
    display_name,
    load_image,
    portable_bytes,
)


def _encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kw)
    return buffer.getvalue()


def _pixels(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


def test_16_bit_greyscale_is_rescaled_not_clipped_to_white(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # the file really is 16-bit
        assert np.asarray(raw.convert("RGB")).mean() > 250  # what a plain convert gives: nearly white
    got = _pixels(load_image(path))
    assert got.min() == 0 and got.max() == 255
    assert abs(got.mean() - 127.5) < 1.0
    assert np.array_equal(got[..., 0], np.rint(ramp / 257.0).astype(int))


def test_16_bit_rgb_and_32_bit_float_images(tmp_path):
    rgb48 = np.zeros((8, 8, 3), np.uint16)
    rgb48[..., 0] = 65535
    path = tmp_path / "rgb48.png"
    import zlib  # a 16-bit-per-channel RGB PNG written by hand: PIL cannot write one

    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb48)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (8).to_bytes(4, "big") * 2 + bytes([16, 2, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))  # fmt: skip
    assert tuple(_pixels(load_image(path))[0, 0]) == (255, 0, 0)
    half = Image.fromarray(np.full((4, 4), 0.5, np.float32))
    assert tuple(_pixels(decode_image(_encode(half, "TIFF")))[0, 0]) == (128, 128, 128)


def test_cmyk_with_and_without_a_profile_becomes_srgb():
    red = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    plain = _pixels(decode_image(_encode(red, "JPEG", quality=95)))
    assert plain[..., 0].mean() > 230 and plain[..., 1:].mean() < 25
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tagged = _pixels(
        decode_image(_encode(Image.new("RGB", (16, 16), (200, 30, 40)), "PNG", icc_profile=srgb))
    )
    assert (
        np.abs(tagged[0, 0] - np.array([200, 30, 40])).max() <= 3
    )  # sRGB through an sRGB profile: unchanged


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue left edge
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    upright = decode_image(_encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert upright.size == (20, 40)
    assert _pixels(upright)[2, 10, 2] > 200  # the blue edge is now on top


def test_transparency_is_composited_over_white_and_palettes_decode():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    got = _pixels(decode_image(_encode(rgba)))
    assert tuple(got[0, 0]) == (255, 0, 0) and tuple(got[4, 4]) == (255, 255, 255)
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert tuple(_pixels(decode_image(_encode(palette)))[0, 0]) == (10, 200, 30)
    palette.info["transparency"] = 1
    assert tuple(_pixels(decode_image(_encode(palette, transparency=1)))[0, 0]) == (255, 255, 255)
    la = Image.new("LA", (4, 4), (0, 0))
    assert tuple(_pixels(decode_image(_encode(la)))[0, 0]) == (255, 255, 255)


def test_animated_images_give_their_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    for fmt in ("GIF", "PNG", "WEBP"):
        buffer = io.BytesIO()
        frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], lossless=True)
        assert _pixels(decode_image(buffer.getvalue(), fmt))[4, 4, 0] > 200, fmt


@pytest.mark.parametrize(
    ("size", "limits", "reason"),
    [
        ((5000, 20), ImageLimits(), "aspect_ratio"),
        ((300, 300), ImageLimits(max_pixels=10_000), "too_many_pixels"),
    ],
)
def test_size_limits_are_checked_from_the_header(size, limits, reason):
    data = _encode(Image.new("RGB", size))
    with pytest.raises(UnreadableImage, match="x.png") as caught:
        decode_image(data, "x.png", limits)
    assert caught.value.reason == reason


def test_a_decompression_bomb_is_refused_before_decoding():
    # a PNG header claiming 100000 x 100000 pixels: refused from the header, never allocated
    header = _encode(Image.new("1", (1, 1)))
    bomb = header[:16] + (100_000).to_bytes(4, "big") * 2 + header[24:]
    with pytest.raises(UnreadableImage) as caught:
        decode_image(bomb, "bomb.png")
    assert caught.value.reason in ("too_many_pixels", "not_an_image")  # PIL may also reject the bad CRC
    assert "bomb.png" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"not an image at all", "not_an_image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "not_an_image"),
    ],
)
def test_what_is_not_an_image_is_named(data, reason):
    with pytest.raises(UnreadableImage) as caught:
        decode_image(data, "odd.bin")
    assert caught.value.reason == reason and "odd.bin" in str(caught.value)


def test_truncated_file_and_missing_file(tmp_path):
    full = _encode(Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")))
    cut = tmp_path / "cut.png"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(UnreadableImage, match="cut.png") as caught:
        load_image(cut)
    assert caught.value.reason == "decode_error"
    with pytest.raises(UnreadableImage, match="nowhere.png") as caught:
        load_image(tmp_path / "nowhere.png")
    assert caught.value.reason == "missing"


def test_non_utf8_names_are_displayable(tmp_path):
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    shown = display_name(tmp_path / name)
    shown.encode("utf-8")  # does not raise
    assert shown.endswith("caf\\xe9.png")
    assert display_name("plain/ü.png") == "plain/ü.png"


def test_portable_bytes_keep_plain_files_and_normalise_the_rest(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(plain)
    assert portable_bytes(plain) == (plain.read_bytes(), "plain.png")
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(deep)
    data, name = portable_bytes(deep)
    assert name == "deep.png" and data != deep.read_bytes()
    with Image.open(io.BytesIO(data)) as img:  # what datasets' Image feature would decode
        assert img.mode == "RGB" and img.getpixel((0, 0)) == (255, 255, 255)


# ------------------------------------------------------------------------------------------ in the runs


@pytest.fixture()
def awkward_folder(tmp_path):
    """Real files a user's folder may hold: good ones, a 16-bit PNG, a CMYK JPEG, a panorama strip over the
    aspect limit, a non-UTF-8 name, a truncated file."""
    folder = tmp_path / "awkward"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for n in range(2):
        Image.fromarray((rng.random((96, 112, 3)) * 255).astype("uint8")).save(folder / f"good{n}.png")
    Image.fromarray((rng.random((64, 64)) * 65535).astype(np.uint16)).save(folder / "deep16.png")
    Image.new("CMYK", (64, 64), (0, 255, 255, 0)).save(folder / "print.jpg", quality=90)
    Image.new("RGB", (6000, 20), (90, 90, 90)).save(folder / "strip.png")
    Image.new("RGB", (64, 64), (10, 120, 10)).save(folder / os.fsdecode(b"gr\xfcn.png"))
    (folder / "cut.png").write_bytes(_encode(Image.new("RGB", (64, 64), (5, 5, 5)))[:60])
    return folder


def test_score_run_reports_each_bad_image_and_scores_the_rest(format_model_dir, awkward_folder, tmp_path):
    from qhawkeye.scoring.config import ScorerConfig
    from qhawkeye.scoring.main import run

    out = tmp_path / "scores.jsonl"
    config = ScorerConfig(model=str(format_model_dir), max_new_tokens=32, batch_size=8)
    summary = run([str(awkward_folder)], config, out=str(out), progress=False)
    rows = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert summary["images"] == 7 and summary["unreadable"] == 2, summary
    assert "gr\\xfcn.png" in rows  # the non-UTF-8 name, escaped, scored
    assert rows["strip.png"]["status"] == "unreadable" and "aspect ratio" in rows["strip.png"]["error"]
    assert rows["cut.png"]["status"] == "unreadable" and "cut.png" in rows["cut.png"]["error"]
    for key in ("good0.png", "good1.png", "deep16.png", "print.jpg", "gr\\xfcn.png"):
        assert rows[key]["status"] != "unreadable", rows[key]
    again = run([str(awkward_folder)], config, out=str(out), progress=False)  # resumes: nothing to redo
    assert again["scored_now"] == 0


def test_degrade_stage_skips_an_unreadable_original_and_goes_on(tmp_path):
    from qhawkeye.data.manifest import read_records, write_records
    from qhawkeye.data.pairs import DegradeConfig, run_degrade

    src = tmp_path / "photos"
    src.mkdir()
    records = []
    for n in range(3):
        path = src / f"p{n}.png"
        Image.fromarray((np.random.default_rng(n).random((48, 48, 3)) * 255).astype("uint8")).save(path)
        records.append({"id": f"p{n}", "group_id": f"g{n}", "image": str(path), "gt_score": 3.0,
                        "label": 3.0, "source": "test"})  # fmt: skip
    ingest = tmp_path / "ingest"
    write_records(ingest, records, "ingest", {}, summary={})
    (src / "p1.png").write_bytes(b"overwritten by something else")  # broken after ingest checked it
    summary = run_degrade(ingest, tmp_path / "degrade", DegradeConfig(workers=1), progress=False)
    assert summary["pairs"] == 2
    assert [u["group_id"] for u in summary["unreadable"]] == ["g1"]
    assert "p1.png" in summary["unreadable"][0]["error"]
    assert [r["group_id"] for r in read_records(tmp_path / "degrade")] == ["g0", "g2"]


@pytest.mark.parametrize(
    "mode",
    ["1", "L", "P", "RGB", "RGBA", "LA", "PA", "La", "RGBa", "RGBX", "I", "I;16", "I;16B", "F", "CMYK", "YCbCr",
     "LAB", "HSV"],
)  # fmt: skip
def test_every_pil_mode_becomes_rgb(mode):
    from qhawkeye.images import to_rgb

    img = to_rgb(Image.new(mode, (6, 4)))
    assert img.mode == "RGB" and img.size == (6, 4)


def test_lab_goes_through_the_colour_profile():
    mid_grey = Image.new("LAB", (4, 4), (100, 128, 128))  # L* 39, a* = b* = 0: neutral grey
    r, g, b = _pixels(decode_image(_encode(mid_grey, "TIFF")))[0, 0]
    assert abs(r - g) <= 2 and abs(g - b) <= 2 and 80 < r < 105
