"""Atomic outputs: every file and folder qhawkeye writes appears whole or not at all.

A file is written to a temporary file in the same folder, flushed to disk, given the permissions a plain
``open`` would give under the user's umask (``mkstemp`` makes it 0600), then renamed over the target with
``os.replace``; a folder is filled under a temporary name and renamed into place. A crash or Ctrl-C leaves the
previous file (or nothing) and at most a dot-named temporary, which the next run ignores. This module imports
nothing from qhawkeye: every layer uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def umask_mode(directory: bool = False) -> int:
    """The permissions a plain ``open``/``mkdir`` would give under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path`` (``mode`` "w" for UTF-8 text, "wb" for bytes); on a clean exit it
    is synced and renamed to ``path``, on an exception removed. The parent folder is created if needed."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, umask_mode())
        kwargs = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_file(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_file(path, "w") as handle:
        handle.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, payload) -> Path:
    """JSON (indented, sorted keys, ``str`` for what JSON lacks) with a final newline."""
    with atomic_file(path, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    return Path(path)


@contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``out`` to fill; on a clean exit it is renamed to ``out`` (which must not exist
    or be an empty folder), on an exception removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        os.chmod(tmp, umask_mode(directory=True))
        yield tmp
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_built(folder: str | os.PathLike, build, marker: str = "config.json") -> Path:
    """``folder`` when it holds ``marker`` (complete: our writes are atomic), else ``build(folder)``. A folder
    without the marker was left by an interrupted copy from outside and is removed first; if another process
    builds it meanwhile (``FileExistsError``), its result is used."""
    folder = Path(folder)
    if (folder / marker).is_file():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    try:
        return build(folder)
    except FileExistsError:
        return folder
