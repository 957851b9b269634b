"""A closed-form forecast of a latent's coded size at every quantisation step.

Rate control looks for the finest step whose file fits a budget, and each exact size
estimate costs a quantisation and a context analysis (a tenth of a second for a Kodak
image). The forecast costs one pass over the latent: each channel is taken as an
independent Laplace of scale b_c = mean |y_c|, whose quantised entropy has a closed form.
It ignores what the context model saves and what rate–distortion quantisation drops, so
it is off by a factor; but that factor changes slowly with the step, so the search starts
from the forecast's answer, scaled by the ratio last measured, and needs fewer estimates
than a search from the finest step.
"""

from __future__ import annotations

import numpy as np

CHUNK = 64                 # channels read at once (bounds a big image's temporaries)
THRESHOLD = 0.6            # |y/Δ| from which a symbol is non-zero: 0.5 + rate_control.DEAD_ZONE


def channel_scales(y: np.ndarray) -> np.ndarray:
    """(M,) float64 mean |y_c| of each channel: its Laplace scale."""
    out = np.empty(y.shape[0])
    for c in range(0, y.shape[0], CHUNK):
        out[c : c + CHUNK] = np.abs(y[c : c + CHUNK]).mean(axis=(1, 2), dtype=np.float64)
    return out


def bits(scales: np.ndarray, symbols_per_channel: int, steps: np.ndarray) -> np.ndarray:
    """Forecast bits of the whole latent at each step in ``steps`` (1-D); never rising with the step."""
    b = scales[scales > 0][None, :]
    t = np.asarray(steps, dtype=np.float64)[:, None] / b
    nonzero = np.exp(-THRESHOLD * t)                      # P(q ≠ 0)
    r = np.exp(-t)                                        # magnitudes beyond 1: geometric with ratio r
    kept = -np.expm1(-t)                                  # 1 − r, exact where t is tiny
    geometric = -np.log2(kept) + r * t / (np.log(2) * kept)
    per_symbol = _binary_entropy(nonzero) + nonzero * (1 + geometric)   # + 1: the sign
    return symbols_per_channel * per_symbol.sum(axis=1)


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-300, 1 - 1e-16)
    return -p * np.log2(p) - (1 - p) * np.log2(1 - p)
