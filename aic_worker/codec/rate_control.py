"""Rate control: the largest file that fits a byte budget.

The knob is the quantisation step Δ (``step_code``, 64 codes per octave); the
number of channel groups follows from it, since trailing groups that quantise
to all zeros are not written. Only when even the coarsest step is too big are
trailing groups dropped (the truncation that ``Codec.truncate`` also does).
docs/model.md gives the measurements behind this choice.

Search: bisection on the fast size estimate (``entropy.estimate_bits``), then
exact encodes around the answer, so the result is always measured, not guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aic_worker.codec import entropy

CODES_PER_OCTAVE = 64
CODE_MIN = 4 * CODES_PER_OCTAVE      # Δ = 1/16
CODE_MAX = 14 * CODES_PER_OCTAVE     # Δ = 64
STEP_ONE = 8 * CODES_PER_OCTAVE      # the code of Δ = 1


class RatioUnreachableError(ValueError):
    """Even the smallest valid file is bigger than the budget."""


def step_of(code: int) -> float:
    return 2.0 ** ((code - STEP_ONE) / CODES_PER_OCTAVE)


def quantise(y: np.ndarray, code: int, group: int) -> np.ndarray:
    """Round y/Δ to integers and drop trailing all-zero groups."""
    q = np.rint(y / step_of(code)).astype(np.int64)
    groups = q.reshape(-1, group, *q.shape[1:]).any(axis=(1, 2, 3))
    keep = int(np.flatnonzero(groups)[-1]) + 1 if groups.any() else 0
    return q[: keep * group]


@dataclass
class RateResult:
    code: int
    payloads: list[bytes]
    size: int                  # bytes of the whole file


Sizer = Callable[[list[bytes]], int]   # payloads → total file bytes (header + metadata + sections)


def _estimate(y: np.ndarray, code: int, group: int, sizer: Sizer) -> int:
    q = quantise(y, code, group)
    if not q.shape[0]:
        return sizer([])
    bits = entropy.estimate_bits(q, group)
    return sizer([b"\0" * (int(b // 8) + 4) for b in bits])


def fit(y: np.ndarray, budget: int, group: int, sizer: Sizer) -> RateResult:
    """Encode y (M, h, w) at the finest step whose file fits ``budget`` bytes."""
    if sizer([]) > budget:
        raise RatioUnreachableError(f"headers and metadata alone take {sizer([])} bytes, budget is {budget}")
    lo, hi = CODE_MIN, CODE_MAX                    # invariant: estimate(hi) <= budget (or hi = MAX)
    if _estimate(y, lo, group, sizer) <= budget:
        hi = lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _estimate(y, mid, group, sizer) <= budget:
            hi = mid
        else:
            lo = mid
    best: RateResult | None = None
    code = hi
    while code <= CODE_MAX:
        payloads = entropy.encode(quantise(y, code, group), group)
        size = sizer(payloads)
        if size <= budget:
            best = RateResult(code, payloads, size)
            break
        code += 1
    if best is None:
        return _truncated(y, budget, group, sizer)
    # The estimate is slightly pessimistic: one finer step may still fit.
    if best.code > CODE_MIN:
        payloads = entropy.encode(quantise(y, best.code - 1, group), group)
        if (size := sizer(payloads)) <= budget:
            best = RateResult(best.code - 1, payloads, size)
    return best


def _truncated(y: np.ndarray, budget: int, group: int, sizer: Sizer) -> RateResult:
    """Coarsest step and still too big: drop trailing groups until the file fits."""
    payloads = entropy.encode(quantise(y, CODE_MAX, group), group)
    while payloads and sizer(payloads) > budget:
        payloads.pop()
    return RateResult(CODE_MAX, payloads, sizer(payloads))
