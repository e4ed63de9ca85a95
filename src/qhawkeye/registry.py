"""Names a user types (rewards, degradations, benchmarks) map to objects through small dicts, with a
did-you-mean error on a typo."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """``registry[name]``, or a ValueError listing the choices and the closest match."""
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(name, list(registry), n=1)
    hint = f" did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown {kind} {name!r}; choose from {sorted(registry)}.{hint}")
