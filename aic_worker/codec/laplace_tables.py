"""Fixed integer probability tables for the latent's entropy coder.

Invariant 4: the decoder must get bit-identical probabilities on any machine.
So the tables are not computed at run time from float math (numpy's ``exp``
differs in the last bit between CPUs): they were generated once by
``build_tables`` and ship as integers in ``laplace_tables.npz``, whose sha256
is pinned here. Each row is a discretised zero-mean Laplace over the symbols
-LIMIT..LIMIT with every frequency at least 1.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import numpy as np

LIMIT = 1023                  # symbols are clamped to [-LIMIT, LIMIT]
SCALES = 64                   # scale index i ↔ Laplace scale SCALE_MIN · 2^(i / 5)
SCALE_MIN = 0.04
TOTAL_BITS = 20               # rows sum to about 2^20 before the +1 floor
TABLE_FILE = Path(__file__).with_name("laplace_tables.npz")
TABLE_SHA256 = "5f670173795ad8f3afb088913335ec632e57fd8ea6df50427b6c650c8b727f77"


def scale_of(index: np.ndarray | int) -> np.ndarray:
    return SCALE_MIN * 2.0 ** (np.asarray(index) / 5)


def build_tables() -> np.ndarray:
    """Generate the (SCALES, 2·LIMIT+1) int64 frequency table (run once, then shipped)."""
    k = np.arange(-LIMIT, LIMIT + 1, dtype=np.float64)
    rows = []
    for i in range(SCALES):
        s = float(scale_of(i))

        def cdf(v: np.ndarray, s: float = s) -> np.ndarray:
            tail = 0.5 * np.exp(-np.abs(v) / s)
            return np.where(v < 0, tail, 1 - tail)

        rows.append(np.floor((cdf(k + 0.5) - cdf(k - 0.5)) * (1 << TOTAL_BITS)).astype(np.int64) + 1)
    return np.stack(rows)


@cache
def frequencies() -> np.ndarray:
    """The shipped table, checked against its pinned hash."""
    data = TABLE_FILE.read_bytes()
    if hashlib.sha256(data).hexdigest() != TABLE_SHA256:
        raise RuntimeError(f"{TABLE_FILE} does not match its pinned sha256; reinstall AIC")
    with np.load(TABLE_FILE, allow_pickle=False) as npz:
        return npz["freq"]


@cache
def bits() -> np.ndarray:
    """Ideal code length of each symbol under each row, in bits (for rate estimates only)."""
    f = frequencies().astype(np.float64)
    return np.log2(f.sum(axis=1, keepdims=True)) - np.log2(f)
