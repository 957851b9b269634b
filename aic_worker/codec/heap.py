"""glibc's malloc and big images: a fixed threshold above which arrays are mapped on their own.

glibc raises its mmap threshold each time a mapped block is freed (up to 32 MiB), so the
arrays of a big image that come after (a tile's activations, the coder's chunks of 1–32 MiB)
are carved from the heap, and the heap keeps the pages of those freed in its middle. A
6000x4000 encode at 16x peaked at 1,906 MB with the dynamic threshold and at 1,520 MB with a
fixed one of 4 MiB (a sampling trace of its RSS; issue #2 bounds it at 2 GB).
"""

from __future__ import annotations

import ctypes
import sys

MMAP_THRESHOLD = 4 << 20        # bytes; blocks this big or bigger get their own mapping
_M_MMAP_THRESHOLD = -3          # mallopt's parameter number (glibc's malloc.h)


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Set glibc's mmap threshold once and for all (which also stops it moving); whether it
    was set. Elsewhere (macOS, musl) nothing happens: their allocators do not move it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    except OSError:                 # a Python that cannot open its own symbols
        return False
    return bool(mallopt and mallopt(_M_MMAP_THRESHOLD, threshold))
