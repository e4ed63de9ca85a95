"""The one image loader: every stage, the scorer, the evaluator and the server decode images here.

:func:`load_image` (a path) and :func:`decode_image` (bytes) return an 8-bit RGB image as a person would see
the file, or raise :class:`UnreadableImage` with the file and the reason; callers turn that into a
per-image ``unreadable`` result and go on with the rest of the run. What it does, in order:

1. Opens only common raster formats (:data:`IMAGE_FORMATS`; never EPS, which would run Ghostscript).
2. Checks the size from the header, before any pixel is decoded: width x height at most
   ``limits.max_pixels`` and the long side at most ``limits.max_aspect_ratio`` times the short side
   (Qwen2.5-VL's processor refuses images over 200:1, which would otherwise abort the whole batch).
3. Decodes the first frame of an animated file (GIF, APNG, WebP, multi-page TIFF).
4. Applies the EXIF orientation (a phone photo stored sideways is scored upright).
5. Converts to 8-bit RGB: 16-bit and 32-bit greyscale are rescaled from their full range (PIL's own
   conversion clips them to 255, a white field); floating-point images are taken as [0, 1] when they lie
   in it and rescaled from their range otherwise; CMYK and images with an embedded ICC profile are converted
   to sRGB through the profile (LittleCMS, in Pillow); transparency (alpha, a palette's transparent index) is
   composited over white.

File names need not be UTF-8: :func:`display_name` gives a printable, JSON-safe form of any path.
This module imports neither torch nor any other qhawkeye package.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
"""File suffixes collected from folders."""

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
"""Formats PIL may open: common raster formats only."""

BACKGROUND = (255, 255, 255)
"""What transparent pixels are composited over."""

_OPEN_LOCK = threading.Lock()  # PIL's bomb guard is a module global: replaced by our limits while opening


class UnreadableImage(ValueError):
    """An image that does not exist, does not decode, or is outside the size limits; the message names the
    file and the reason. ``reason`` is a short code: ``missing``, ``not_an_image``, ``too_many_pixels``,
    ``aspect_ratio``, ``empty`` or ``decode_error``."""

    def __init__(self, message: str, reason: str = "decode_error"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageLimits:
    """Size limits checked from the header before decoding.

    Attributes:
        max_pixels: width x height at most this (default 2^28, about 268 million: a 200-megapixel phone photo
            passes; a decompression bomb does not).
        max_aspect_ratio: long side / short side at most this (default 200, Qwen2.5-VL's processor limit).
    """

    max_pixels: int = 2**28
    max_aspect_ratio: float = 200.0

    def __post_init__(self):
        if not (isinstance(self.max_pixels, int) and self.max_pixels >= 1):
            raise ValueError(f"max_image_pixels must be a positive integer, got {self.max_pixels!r}")
        if not (isinstance(self.max_aspect_ratio, (int, float)) and self.max_aspect_ratio >= 1):
            raise ValueError(f"max_aspect_ratio must be a number >= 1, got {self.max_aspect_ratio!r}")


DEFAULT_LIMITS = ImageLimits()


def display_name(path: str | os.PathLike) -> str:
    """A printable, UTF-8-encodable form of ``path``: bytes that are not UTF-8 (kept by Python as lone
    surrogates) are written as ``\\xNN`` escapes, so ids and messages survive JSON, CSV and terminals."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def load_image(path: str | os.PathLike, limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """Decode the file at ``path`` to 8-bit RGB (see the module's docstring); :class:`UnreadableImage`
    names the file and why not."""
    where = display_name(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UnreadableImage(f"{where}: no such file", "missing") from None
    except OSError as err:
        raise UnreadableImage(f"{where}: cannot read: {err.strerror or err}", "missing") from None
    return decode_image(data, where, limits)


def decode_image(data: bytes, where: str = "image", limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """Decode encoded image bytes to 8-bit RGB; ``where`` names the source in errors."""
    if not data:
        raise UnreadableImage(f"{where}: the file is empty", "empty")
    with _OPEN_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        try:
            Image.MAX_IMAGE_PIXELS = None  # our own limit below, from the header; PIL's would raise or warn
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # reads the header only
        except UnidentifiedImageError:
            message = f"{where}: not an image in a supported format ({', '.join(IMAGE_FORMATS)})"
            raise UnreadableImage(message, "not_an_image") from None
        except Exception as err:  # noqa: BLE001 - hostile headers raise SyntaxError, struct.error, ...
            raise UnreadableImage(f"{where}: {type(err).__name__}: {err}", "not_an_image") from None
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    with img:
        check_size(img.size, where, limits)
        try:
            img.seek(0)  # the first frame of an animation
            img.load()
            return to_rgb(img)
        except UnreadableImage:
            raise
        except Exception as err:  # noqa: BLE001 - truncated or corrupt data
            raise UnreadableImage(f"{where}: {type(err).__name__}: {err}", "decode_error") from None


def check_size(size: tuple[int, int], where: str, limits: ImageLimits = DEFAULT_LIMITS) -> None:
    """Refuse an empty, too large or too elongated image from its header size."""
    width, height = size
    if width < 1 or height < 1:
        raise UnreadableImage(f"{where}: the image is {width}x{height} pixels (empty)", "empty")
    if width * height > limits.max_pixels:
        raise UnreadableImage(
            f"{where}: {width}x{height} = {width * height} pixels is over the limit of {limits.max_pixels}; "
            "downscale it or raise max_image_pixels",
            "too_many_pixels",
        )
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        raise UnreadableImage(
            f"{where}: {width}x{height} has an aspect ratio of {ratio:.0f}:1, over the limit of "
            f"{limits.max_aspect_ratio:g}:1 (vision-language processors refuse it); crop it",
            "aspect_ratio",
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """An already-loaded PIL image as 8-bit RGB: EXIF orientation, bit depth, colour profile, transparency."""
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_rgb(img)
    profile = img.info.get("icc_profile")
    if img.mode == "LAB":  # CIELAB (TIFF): through LittleCMS, not a byte reinterpretation
        return ImageCms.applyTransform(img, _lab_to_srgb())
    if img.mode == "La":  # premultiplied alpha: PIL converts it only to LA
        img = img.convert("LA")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, BACKGROUND + (255,))
        img = Image.alpha_composite(background, img).convert("RGB")
    if profile and img.mode in ("RGB", "CMYK", "L"):
        converted = _via_profile(img, profile)
        if converted is not None:
            return converted
    return img if img.mode == "RGB" else img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    arr = np.asarray(img).astype(np.float64)
    if img.mode == "F":
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if lo < 0.0 or hi > 1.0:
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        arr = np.nan_to_num(arr, nan=0.0) * 255.0
    elif img.mode == "I" and (arr.min() < 0 or arr.max() > 65535):
        lo, hi = float(arr.min()), float(arr.max())  # 32-bit data: its own range
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    else:
        arr = arr / 257.0  # 16-bit: 65535 -> 255
    grey = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    return grey.convert("RGB")


_SRGB = None
_LAB = None


def _lab_to_srgb():
    global _LAB
    if _LAB is None:
        _LAB = ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
    return _LAB


def _via_profile(img: Image.Image, profile: bytes) -> Image.Image | None:
    """Convert through the embedded ICC profile to sRGB; None when the profile is unusable (the caller then
    converts without it)."""
    global _SRGB
    try:
        if _SRGB is None:
            _SRGB = ImageCms.createProfile("sRGB")
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return ImageCms.profileToProfile(img, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def portable_bytes(path: str | os.PathLike, limits: ImageLimits = DEFAULT_LIMITS) -> tuple[bytes, str]:
    """The bytes to embed for ``path`` in a dataset that other code decodes plainly (``datasets``' Image
    feature, a processor): the file's own bytes when a plain decode already gives what :func:`load_image`
    gives (8-bit RGB or greyscale, upright, no colour profile, one frame), else a PNG of :func:`load_image`'s
    result. Returns ``(bytes, file name)``."""
    where = display_name(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UnreadableImage(f"{where}: cannot read: {err.strerror or err}", "missing") from None
    name = display_name(Path(path).name)
    rgb = decode_image(data, where, limits)  # validates, whatever is embedded
    with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
        plain = (
            img.mode in ("RGB", "L")
            and img.getexif().get(0x0112, 1) == 1
            and not img.info.get("icc_profile")
            and getattr(img, "n_frames", 1) == 1
        )
    if plain:
        return data, name
    buffer = io.BytesIO()
    rgb.save(buffer, "PNG")
    return buffer.getvalue(), str(Path(name).with_suffix(".png"))
