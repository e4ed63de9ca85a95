"""What produced a result: library versions, the qhawkeye git commit, and dataset fingerprints.

Written beside every checkpoint and result so that numbers can be traced to code and data.
"""

from __future__ import annotations

import importlib.metadata
import math
import platform
import subprocess
from pathlib import Path

from qhawkeye.atomic import umask_mode, write_json_atomic  # noqa: F401 - re-exported: the old home

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


def json_safe(value):
    """A copy of ``value`` with NaN and infinities as None (strict JSON has no NaN; the reason is stored beside)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
