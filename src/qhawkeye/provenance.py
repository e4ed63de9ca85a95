"""What produced a result: library versions, the qhawkeye git commit, and dataset fingerprints.

Written beside every checkpoint and result so that numbers can be traced to code and data.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path

PACKAGES = (
    "qhawkeye",
    "torch",
    "transformers",
    "trl",
    "datasets",
    "accelerate",
    "peft",
    "deepspeed",
    "pillow",
)


def library_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, str | bool | None]:
    """The commit of the qhawkeye source tree (None when not run from a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def dataset_fingerprint(dataset, path: str | Path | None = None) -> dict:
    """Identity of a Hugging Face dataset: its datasets fingerprint, size, columns and source folder."""
    return {
        "path": str(path) if path is not None else None,
        "fingerprint": getattr(dataset, "_fingerprint", None),
        "num_rows": len(dataset),
        "columns": list(dataset.column_names),
    }


def umask_mode(directory: bool = False) -> int:
    """The permissions a plain ``open``/``mkdir`` would give under the current umask. ``mkstemp``/``mkdtemp``
    create 0600/0700 entries; our atomic writes chmod them to this before renaming them into place."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def write_json_atomic(path: str | Path, payload: dict) -> None:
    """Write JSON to ``path`` through a temporary file in the same folder, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, umask_mode())
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def json_safe(value):
    """A copy of ``value`` with NaN and infinities as None (strict JSON has no NaN; the reason is stored beside)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
