"""A tiny codec model (random weights, 32 latent channels) and small photo-like images for it.

The chaos and fuzz benches use it so that what they measure is the machinery (queues,
leases, files; the format reader), not the codec's speed. It compresses 64x64 images and up
at ratio 24 (the tests' `model_file` fixture builds the same kind of model).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

TINY_RATIO = 24
LATENT_GAIN = 300  # scales the analysis up and the synthesis down: a latent coarse steps can carry


def write_tiny_model(path: Path, seed: int = 0) -> Path:
    import torch

    from aic_worker.codec.transforms import Autoencoder, ModelConfig
    from aic_worker.codec.weights import save_model

    torch.manual_seed(seed)
    model = Autoencoder(ModelConfig(channels=16, latent_channels=32, group_size=8))
    with torch.no_grad():
        model.g_a.block.weight.mul_(LATENT_GAIN)
        model.g_s.block.weight.div_(LATENT_GAIN)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, path)
    return path


def small_photo_png(seed: int, size: int = 64) -> bytes:
    """Gradients plus noise that differ for every seed: a distinct small 'photo' as PNG bytes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    tilt = rng.uniform(0.5, 1.5, 3)
    base = np.stack([xx * tilt[0], yy * tilt[1], (xx + yy) * tilt[2] / 2], axis=-1) * (200 / size)
    base += rng.normal(0, 12, (size, size, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()
