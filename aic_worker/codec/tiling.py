"""Run the transforms tile by tile, so big images fit in bounded memory.

Each tile carries a halo of HALO latent units (64 pixels) on every side, wider
than the transforms' reach through their zero padding (~30 pixels), and only
its centre is kept: the stitched result equals a whole-image pass up to float
rounding, so there are no seams.
"""

from __future__ import annotations

import torch

from aic_worker.codec.transforms import Autoencoder

SCALE = 16      # pixels per latent unit
TILE = 64       # latent units per tile side (1024 pixels)
HALO = 4


def _spans(n: int) -> list[tuple[int, int]]:
    return [(s, min(s + TILE, n)) for s in range(0, n, TILE)]


@torch.inference_mode()
def analyse(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) with H, W multiples of 16 → latent (1, M, H/16, W/16)."""
    h, w = x.shape[2] // SCALE, x.shape[3] // SCALE
    if h <= TILE and w <= TILE:
        return model.g_a(x)
    out = torch.empty((1, model.cfg.latent_channels, h, w), device=x.device)
    for y0, y1 in _spans(h):
        for x0, x1 in _spans(w):
            a0, b0 = max(0, y0 - HALO), max(0, x0 - HALO)
            a1, b1 = min(h, y1 + HALO), min(w, x1 + HALO)
            part = model.g_a(x[:, :, a0 * SCALE : a1 * SCALE, b0 * SCALE : b1 * SCALE])
            out[:, :, y0:y1, x0:x1] = part[:, :, y0 - a0 : y1 - a0, x0 - b0 : x1 - b0]
    return out


@torch.inference_mode()
def synthesise(model: Autoencoder, y: torch.Tensor) -> torch.Tensor:
    """Latent (1, M, h, w) → image (1, 3, 16h, 16w) in [0, 1]."""
    h, w = y.shape[2], y.shape[3]
    if h <= TILE and w <= TILE:
        return model.g_s(y).clamp_(0, 1)
    out = torch.empty((1, 3, h * SCALE, w * SCALE), device=y.device)
    for y0, y1 in _spans(h):
        for x0, x1 in _spans(w):
            a0, b0 = max(0, y0 - HALO), max(0, x0 - HALO)
            a1, b1 = min(h, y1 + HALO), min(w, x1 + HALO)
            part = model.g_s(y[:, :, a0:a1, b0:b1]).clamp_(0, 1)
            out[:, :, y0 * SCALE : y1 * SCALE, x0 * SCALE : x1 * SCALE] = part[
                :, :, (y0 - a0) * SCALE : (y1 - a0) * SCALE, (x0 - b0) * SCALE : (x1 - b0) * SCALE
            ]
    return out
