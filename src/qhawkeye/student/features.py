"""Quality features of an image: EfficientNet-Lite0 activations pooled over space, at (nearly) native resolution.

Quality lives in detail that a 224-pixel resize destroys, so images are not resized to a fixed size: an image
is scaled down (aspect kept, Pillow's bicubic) only when it has more than ``max_pixels`` pixels, and never up.
Each of the network's 8 taps (the output of its 7 stages and of its head) gives the spatial mean and the
standard deviation of every channel: 4,128 numbers per image. Images of one size run as one batch; the
network is channels-last in inference mode, on the threads torch is given.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from qhawkeye.student import backbone as trunk

MIN_SIDE = 32  # smaller images are refused by the scorer: five stride-2 layers leave nothing to pool


@dataclass(frozen=True)
class FeatureSpec:
    """What a student's head was fitted on; recorded in the student folder and used again when scoring."""

    backbone: str = "efficientnet-lite0"
    weights_sha256: str = trunk.WEIGHTS_SHA256
    max_pixels: int | None = (
        131_072  # 2^17 (418x314 for a 4:3 photo): see benchmarks/RESULTS.md (issue 12) for the trade-off
    )
    pooling: str = "mean+std"

    def __post_init__(self):
        if self.backbone != "efficientnet-lite0":
            raise ValueError(
                f"unknown student backbone {self.backbone!r}; only 'efficientnet-lite0' is supported"
            )
        if self.max_pixels is not None and self.max_pixels < MIN_SIDE * MIN_SIDE:
            raise ValueError(
                f"max_pixels must be >= {MIN_SIDE * MIN_SIDE} or None (native), got {self.max_pixels}"
            )
        if self.pooling != "mean+std":
            raise ValueError(f"unknown pooling {self.pooling!r}; only 'mean+std' is supported")

    @property
    def dim(self) -> int:
        return 2 * sum(s[5] for s in trunk.STAGES) + 2 * trunk.HEAD_CHANNELS

    def to_dict(self) -> dict:
        return asdict(self)


def scaled_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    """The size an image is scored at: its own, or scaled down to ``max_pixels`` (aspect kept)."""
    if max_pixels is None or width * height <= max_pixels:
        return width, height
    factor = math.sqrt(max_pixels / (width * height))
    return max(1, round(width * factor)), max(1, round(height * factor))


class FeatureExtractor:
    """Loads the backbone once; :meth:`__call__` maps RGB images to a (N, spec.dim) float32 array."""

    def __init__(self, spec: FeatureSpec, batch_size: int = 2, device: str | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.spec, self.batch_size = spec, batch_size
        self.device = torch.device(device or "cpu")
        net = trunk.load_backbone()
        if spec.weights_sha256 != trunk.WEIGHTS_SHA256:
            raise ValueError(
                f"this student was fitted on backbone weights {spec.weights_sha256[:12]}..., the installed ones are "
                f"{trunk.WEIGHTS_SHA256[:12]}...: rebuild it with `qhawkeye distill`"
            )
        self.net = net.to(self.device, memory_format=torch.channels_last)

    def prepare(self, image: Image.Image) -> Image.Image:
        size = scaled_size(image.width, image.height, self.spec.max_pixels)
        return image if size == image.size else image.resize(size, Image.BICUBIC)

    @torch.inference_mode()
    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        prepared = [self.prepare(im) for im in images]
        out = np.zeros((len(images), self.spec.dim), dtype=np.float32)
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for n, im in enumerate(prepared):
            by_size[im.size].append(n)
        for rows in by_size.values():
            for start in range(0, len(rows), self.batch_size):
                part = rows[start : start + self.batch_size]
                arrays = np.stack([np.asarray(prepared[n], dtype=np.uint8) for n in part])
                batch = torch.from_numpy(arrays).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
                batch = trunk.normalise(batch).contiguous(memory_format=torch.channels_last)
                feats = trunk.pooled_features(self.net.taps(batch))
                out[part] = feats.cpu().numpy()
        return out
