"""Image degradations used to build original/degraded pairs (SPEC "Data pipeline").

Each degradation keeps the image size, is deterministic given a ``numpy.random.Generator``, and has two
strengths: ``first`` (noise std 45, blur radius 2.0, jpeg quality 5 x3, darken 0.6) and ``second``, the
stronger settings applied on top of an imperceptible first degradation (noise 65, blur 4.0, jpeg 5 x3,
darken 0.5). Names map to functions through :data:`DEGRADATIONS`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from qhawkeye.registry import lookup


@dataclass(frozen=True)
class DegradationParams:
    noise_std: float
    blur_radius: float
    jpeg_quality: int
    jpeg_passes: int
    darken_factor: float

    def __post_init__(self):
        checks = [
            ("noise_std", self.noise_std > 0, "> 0 (a std on the 0-255 scale)"),
            ("blur_radius", self.blur_radius > 0, "> 0 (pixels)"),
            (
                "jpeg_quality",
                1 <= self.jpeg_quality <= 95,
                "in [1, 95] (Pillow's useful range; lower is worse)",
            ),
            ("jpeg_passes", self.jpeg_passes >= 1, ">= 1"),
            (
                "darken_factor",
                0 < self.darken_factor < 1,
                "in (0, 1) (a brightness factor; 1 changes nothing)",
            ),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"degradation parameter {name} = {getattr(self, name)!r} must be {rule}")


FIRST = DegradationParams(noise_std=45.0, blur_radius=2.0, jpeg_quality=5, jpeg_passes=3, darken_factor=0.6)
SECOND = DegradationParams(noise_std=65.0, blur_radius=4.0, jpeg_quality=5, jpeg_passes=3, darken_factor=0.5)


def gaussian_noise(img: Image.Image, params: DegradationParams, rng: np.random.Generator) -> Image.Image:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    noisy = arr + rng.normal(0.0, params.noise_std, size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


def gaussian_blur(img: Image.Image, params: DegradationParams, rng: np.random.Generator) -> Image.Image:
    return img.convert("RGB").filter(ImageFilter.GaussianBlur(radius=params.blur_radius))


def jpeg(img: Image.Image, params: DegradationParams, rng: np.random.Generator) -> Image.Image:
    out = img.convert("RGB")
    for _ in range(params.jpeg_passes):
        buffer = io.BytesIO()
        out.save(buffer, format="JPEG", quality=params.jpeg_quality)
        buffer.seek(0)
        out = Image.open(buffer)
        out.load()
    return out.convert("RGB")


def darken(img: Image.Image, params: DegradationParams, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Brightness(img.convert("RGB")).enhance(params.darken_factor)


DEGRADATIONS: dict[str, Callable[[Image.Image, DegradationParams, np.random.Generator], Image.Image]] = {
    "noise": gaussian_noise,
    "blur": gaussian_blur,
    "jpeg": jpeg,
    "darken": darken,
}


def get_degradation(name: str):
    """The degradation function called ``name`` (did-you-mean error on an unknown name)."""
    return lookup(DEGRADATIONS, name, "degradation")


def degrade(
    img: Image.Image, name: str, rng: np.random.Generator, params: DegradationParams = FIRST
) -> Image.Image:
    """Apply degradation ``name``; the result has ``img``'s size."""
    out = get_degradation(name)(img, params, rng)
    assert out.size == img.size, "degradations must keep the image size"
    return out
