"""Quality measures the worker records and the bench reports: PSNR and MS-SSIM.

What is measured (pixels_of): 8-bit RGB for every mode the codec takes, except 16-bit grey
(I;16, I;16B, I;16L, I), which is measured on its real values: PSNR with a peak of 65535,
MS-SSIM on the values scaled by 255/65535 (not rounded; SSIM's constants scale with the
peak, so this is MS-SSIM at peak 65535). Converting such an image to RGB first would clip
every value above 255 (an image of 31.69 dB measured 28.25 dB that way until release 0.4.0).

MS-SSIM follows Wang et al. 2003 (11-tap Gaussian, σ = 1.5, five scales with
the paper's weights); images too small for five scales use as many as fit,
with the weights renormalised.

``luma`` gives the BT.601 luma (Y = 0.299 R + 0.587 G + 0.114 B, unrounded) that the bench
also measures: classic codecs subsample and quantise chroma coarsely, so RGB measures and
luma measures rank codecs differently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from aic_worker.codec.colour import LUMA
from aic_worker.codec.image_modes import SIXTEEN_BIT

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW = 11


EIGHT_BIT_PEAK = 255.0
SIXTEEN_BIT_PEAK = 65535.0


@dataclass(frozen=True)
class Pixels:
    """An image's values as quality is measured on them: (H, W, channels), and their peak."""

    values: np.ndarray
    peak: float


def pixels_of(image: Image.Image) -> Pixels:
    """8-bit RGB, or for 16-bit grey its real values (one channel, peak 65535)."""
    if image.mode in SIXTEEN_BIT:
        return Pixels(np.asarray(image).astype(np.float64)[..., None], SIXTEEN_BIT_PEAK)
    return Pixels(np.asarray(image.convert("RGB")), EIGHT_BIT_PEAK)


def measure(reference: Pixels, decoded: Pixels) -> tuple[float, float]:
    """(PSNR, MS-SSIM) of `decoded` against `reference`, both from pixels_of on the same mode."""
    if reference.peak != decoded.peak or reference.values.shape != decoded.values.shape:
        raise ValueError(
            f"can't compare {decoded.values.shape} at peak {decoded.peak:g} with "
            f"{reference.values.shape} at peak {reference.peak:g}"
        )
    scale = EIGHT_BIT_PEAK / reference.peak
    return (
        psnr(reference.values, decoded.values, reference.peak),
        ms_ssim(reference.values * scale, decoded.values * scale),
    )


def luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB values → (H, W, 1) float64 BT.601 luma on the same scale (not rounded)."""
    return (rgb.astype(np.float64) @ np.array(LUMA))[..., None]


def psnr(a: np.ndarray, b: np.ndarray, peak: float = EIGHT_BIT_PEAK) -> float:
    """PSNR in dB of two arrays of equal shape whose values reach `peak` (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def gaussian_window(size: int) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    return (g / g.sum()).float()


def _ssim_parts(x: torch.Tensor, y: torch.Tensor, win: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = gaussian_window(win)
    c = x.shape[1]
    kh = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    kv = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kv, groups=c)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    return (lum * cs).mean(), cs.mean()


@torch.inference_mode()
def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two (H, W, channels) arrays with values in 0–255, in [0, 1]."""
    x = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
    y = torch.from_numpy(b.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
    side = min(x.shape[2], x.shape[3])
    win = min(WINDOW, side if side % 2 else side - 1)
    if win < 1:
        return 1.0 if np.array_equal(a, b) else 0.0
    levels = 1
    while levels < len(WEIGHTS) and side // 2**levels >= win:
        levels += 1
    weights = torch.tensor(WEIGHTS[:levels])
    weights = weights / weights.sum()
    values = []
    for level in range(levels):
        ssim, cs = _ssim_parts(x, y, win)
        values.append(ssim if level == levels - 1 else cs)
        if level < levels - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values).clamp_min(1e-6)
    return float(torch.prod(stacked**weights))
