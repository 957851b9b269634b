"""Quality measures the worker records and the bench reports: PSNR and MS-SSIM (RGB, 8-bit).

MS-SSIM follows Wang et al. 2003 (11-tap Gaussian, σ = 1.5, five scales with
the paper's weights); images too small for five scales use as many as fit,
with the weights renormalised.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW = 11


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of equal shape (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


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
    """MS-SSIM of two (H, W, 3) uint8 arrays, in [0, 1]."""
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
