"""Turning what a client sent into an RGB image, within the server's limits.

Where an image may come from:

- base64 bytes (``/v1/score``'s ``data``), or a ``data:image/...;base64,`` URL (a chat ``image_url`` part or
  ``/v1/score``'s ``url``);
- a local path or a ``file://`` URL, only when the server was started with ``--image-root``, and only to a
  file under that folder once symlinks are resolved (an absolute path is allowed if it lies under the root).
  Without a root every local path is refused (403); so is one outside it.
- ``http(s)://`` URLs are never fetched (400): the server makes no outgoing requests.

Limits: ``--max-image-bytes`` on the encoded size (checked from the base64 length or the file size before
reading, 413), and ``--max-image-pixels`` on width x height, read from the header before anything is decoded
(413), and ``--max-aspect-ratio`` (an image over it is unreadable, reported per image). Decoding is the
package's one loader, :mod:`qhawkeye.images` (formats, 16-bit, CMYK, EXIF orientation, transparency).

What is the request's fault (invalid base64, a bad or refused path, a limit) raises
:class:`~qhawkeye.serve.errors.ApiError`; bytes that do not decode, or a missing file under the root, raise
:class:`~qhawkeye.images.UnreadableImage`, which ``/v1/score`` reports per image and chat answers 400.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from PIL import Image

from qhawkeye.images import IMAGE_FORMATS, ImageLimits, UnreadableImage, decode_image
from qhawkeye.serve.errors import ApiError

if TYPE_CHECKING:
    from qhawkeye.serve.main import ServeConfig

__all__ = ["IMAGE_FORMATS", "ImageLoader"]


class ImageLoader:
    """Turns what a client sent (base64, a data URL, a path under the root) into an RGB image, within limits.

    Raises :class:`ApiError` for what is the request's fault (invalid base64, a path outside the root, a size
    limit) and :class:`UnreadableImage` for bytes that are not a decodable image or a missing file.
    """

    def __init__(self, config: ServeConfig):
        self.max_bytes = config.max_image_bytes
        self.limits = ImageLimits(config.max_image_pixels, config.max_aspect_ratio)
        self.root = Path(config.image_root).expanduser().resolve() if config.image_root else None

    def from_url(self, url: str, where: str) -> Image.Image:
        if url.startswith("data:"):
            header, comma, payload = url.partition(",")
            if not comma or not header.endswith(";base64"):
                raise ApiError(
                    400, f"{where}: a data URL must look like data:image/png;base64,...", "invalid_url"
                )
            return self.from_base64(payload, where)
        parsed = urlparse(url)
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise ApiError(400, f"{where}: file:// URLs must name a local file", "invalid_url")
            return self.from_path(unquote(parsed.path), where)
        if parsed.scheme in ("http", "https"):
            raise ApiError(
                400, f"{where}: remote URLs are not fetched; send the image as a data URL", "invalid_url"
            )
        return self.from_path(url, where)

    def from_base64(self, text: str, where: str) -> Image.Image:
        text = "".join(text.split())
        if len(text) // 4 * 3 > self.max_bytes + 2:
            raise self._too_big(len(text) // 4 * 3, where)
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ApiError(400, f"{where}: invalid base64 ({err})", "invalid_base64") from None
        return self.decode(data, where)

    def from_path(self, text: str, where: str) -> Image.Image:
        if self.root is None:
            raise ApiError(
                403, f"{where}: local paths are refused: start the server with --image-root", "path_refused"
            )
        try:
            path = (self.root / text).resolve()  # an absolute `text` replaces the root; symlinks are resolved
        except (OSError, ValueError) as err:  # a NUL byte, a symlink loop
            raise ApiError(400, f"{where}: invalid path {text!r}: {err}", "invalid_path") from None
        if not path.is_relative_to(self.root):
            raise ApiError(403, f"{where}: {text!r} is outside the server's image root", "path_outside_root")
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise self._too_big(size, where)
            data = path.read_bytes()
        except OSError as err:
            raise UnreadableImage(f"{where}: {text}: {err.strerror or err}") from None
        return self.decode(data, where)

    def decode(self, data: bytes, where: str) -> Image.Image:
        if len(data) > self.max_bytes:
            raise self._too_big(len(data), where)
        try:
            return decode_image(data, where, self.limits)
        except UnreadableImage as err:
            if err.reason == "too_many_pixels":  # the request's fault: it sent more than the server allows
                raise ApiError(413, f"{err}", "too_many_pixels") from None
            raise

    def _too_big(self, size: int, where: str) -> ApiError:
        message = f"{where}: {size} bytes is over the server's limit of {self.max_bytes} bytes per image"
        return ApiError(413, message, "image_too_large")
