"""Per-channel quantisation steps (format version 4): the later channels quantised more coarsely.

Channel k of the latent is quantised with step Δ·w_k, where w_k = 1 + a·min(1, k / RAMP)
rises from 1 for the block means to 1 + a from channel RAMP on. The file names a in
eighths (its *tilt code*, bits 10–14 of the header's step_code), so the profile is the
file's, not the model's, and a file written with one tilt decodes the same forever.

Why: the leading channels (block means and slow gradients) carry the structure that
MS-SSIM weighs most, the later ones fine texture. At the same bytes, a finer step for the
first channels and a coarser one for the rest gave, on training photos and downscaled
wallpapers (never Kodak; docs/model.md, *Step profile*), a lower BD-rate in MS-SSIM and
in PSNR alike.
"""

from __future__ import annotations

import numpy as np

TILT_SHIFT = 10                      # the tilt code's place in step_code (bits 10–14)
TILT_MAX = 0x1F
TILT_UNIT = 8                        # tilt code t means a = t / 8
RAMP = 96                            # channels over which the step rises to (1 + a)·Δ
DEFAULT_TILT = 4                     # a = 0.5: what the encoder writes


def weights(tilt: int, channels: int) -> np.ndarray:
    """The (channels,) float32 step multipliers w_k of tilt code ``tilt``."""
    ramp = np.minimum(np.float32(1), np.arange(channels, dtype=np.float32) / np.float32(RAMP))
    return (1 + np.float32(tilt / TILT_UNIT) * ramp).astype(np.float32)


def tilt_of(step_code: int) -> int:
    """The tilt code a header's step_code carries (0 in files of versions 1 to 3)."""
    return (step_code >> TILT_SHIFT) & TILT_MAX


def with_tilt(step_code: int, tilt: int) -> int:
    """``step_code`` carrying tilt code ``tilt``."""
    if not 0 <= tilt <= TILT_MAX:
        raise ValueError(f"tilt code {tilt} is outside 0..{TILT_MAX}")
    return (step_code & ~(TILT_MAX << TILT_SHIFT)) | tilt << TILT_SHIFT
