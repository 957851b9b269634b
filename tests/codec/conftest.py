"""Small random-weight models and generated images: fast, and no data files needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aic_worker.codec import Codec
from aic_worker.codec.transforms import Autoencoder, ModelConfig
from aic_worker.codec.weights import save_model

SMALL = ModelConfig(channels=16, latent_channels=32, group_size=8, step_input=1)


def make_model(seed: int, gain: float = 300.0) -> Autoencoder:
    """Random weights; ``gain`` scales the latent so fine steps give big files."""
    torch.manual_seed(seed)
    model = Autoencoder(SMALL)
    with torch.no_grad():
        model.g_a.block.weight.mul_(gain)
        model.g_s.block.weight.div_(gain)
    return model


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "small.safetensors"
    save_model(make_model(0), path)
    return path


@pytest.fixture(scope="session")
def codec(model_path: Path) -> Codec:
    return Codec.load(model_path, device="cpu")


def photo_like(w: int, h: int, seed: int = 0) -> Image.Image:
    """Smooth gradients plus texture and an edge: something like a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / max(w, 1), yy / max(h, 1), (xx + yy) / max(w + h, 1)], axis=-1) * 200
    base += rng.normal(0, 12, (h, w, 3))
    base[:, : w // 3] += 40
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
