"""Keep freed memory in the process instead of handing it back to the kernel (glibc ``mallopt``).

Training and scoring allocate and free the same large tensors at every step (logits over a 152k vocabulary,
activations of a 500x500 image). glibc serves blocks above 128 KB-32 MB with a fresh ``mmap`` and returns them
with ``munmap`` on free, so every step page-faults its big tensors in again. On the 2-core CPU machine of
``benchmarks/RESULTS.md`` that cost 33.7 s of system time for 200 allocations of 100 MB (37 s in all, against
6.4 s with this tuning), and the GPU check's CPU dry run took 2 min 43 s instead of 50 s (system time 1 min 44 s
against 6 s). The tuning raises the mmap threshold and the trim threshold and pads the heap, so freed blocks
are reused; the cost is a resident size that stays at its peak.

The ``qhawkeye`` command and the test suite apply it at start; library users call :func:`tune` themselves if
they want it. ``QHAWKEYE_MALLOC_TUNING=0`` turns it off; anything but ``0``/``1`` is an error. It does nothing
where the C library is not glibc (macOS, musl, Windows).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

logger = logging.getLogger(__name__)

ENV = "QHAWKEYE_MALLOC_TUNING"
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {M_MMAP_THRESHOLD: 2**31 - 1, M_TRIM_THRESHOLD: 2**31 - 1, M_TOP_PAD: 256 << 20}


def enabled() -> bool:
    value = os.environ.get(ENV, "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"{ENV} must be 0 or 1, got {value!r}")
    return value == "1"


def tune() -> bool:
    """Apply the glibc settings above (once per process is enough); True when they took effect."""
    if not enabled() or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = all(libc.mallopt(option, value) == 1 for option, value in SETTINGS.items())
    except (OSError, AttributeError):
        return False
    if not ok:
        logger.debug("mallopt refused a setting; the allocator keeps its defaults")
    return ok
