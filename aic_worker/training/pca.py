"""The KLT of 16x16 RGB patches: where a fresh model's block transform starts.

Ordered by variance, its components are the importance ordering the codec's
truncation relies on, before any training has happened.
"""

from __future__ import annotations

import numpy as np
import torch

from aic_worker.codec.transforms import BLOCK
from aic_worker.training.dataset import CropSampler


def block_pca(
    sampler: CropSampler, patches: int = 200_000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(basis (3·16·16, 3·16·16) rows by falling variance, mean (3·16·16) per colour channel)."""
    rng = np.random.default_rng(seed)
    per_image = max(1, patches // len(sampler.images))
    rows = []
    for img in sampler.images:
        ys = rng.integers(0, img.shape[0] - BLOCK + 1, per_image)
        xs = rng.integers(0, img.shape[1] - BLOCK + 1, per_image)
        for y, x in zip(ys, xs, strict=True):
            rows.append(img[y : y + BLOCK, x : x + BLOCK].transpose(2, 0, 1).reshape(-1))
    data = np.stack(rows).astype(np.float64) / 255
    channel_mean = data.reshape(len(data), 3, -1).mean(axis=(0, 2))
    mean = np.repeat(channel_mean, BLOCK * BLOCK)
    centred = data - mean
    cov = centred.T @ centred / len(data)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    return torch.from_numpy(vectors[:, order].T.copy()).float(), torch.from_numpy(mean).float()
