"""Tiles with halos stitch to exactly the whole-image result (no seams)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aic_worker.codec import tiling
from tests.codec.conftest import make_model


@pytest.fixture
def small_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiling, "TILE", 3)
    monkeypatch.setattr(tiling, "GRADIENT_TILE", 3)


def _trained_looking():
    """Random weights everywhere, including the zero-initialised branches."""
    model = make_model(7, gain=1.0)
    torch.manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.05)
    return model.eval()


def test_tiled_analysis_matches_whole_image(small_tiles: None) -> None:
    model = _trained_looking()
    x = torch.randint(0, 256, (1, 3, 16 * 8, 16 * 11), dtype=torch.uint8)
    with torch.inference_mode():
        whole = model.g_a(x.float() / 255)
    tiled = tiling.analyse(model, x)
    assert torch.allclose(whole, tiled, atol=1e-4)


def _whole_synthesis(model, q: np.ndarray, step: float) -> np.ndarray:
    y = torch.zeros(1, model.cfg.latent_channels, *q.shape[1:])
    y[0, : q.shape[0]] = torch.from_numpy(q).float() * step
    with torch.inference_mode():
        x = model.g_s(y, step).clamp(0, 1)
    return x.mul(255).round().byte()[0].permute(1, 2, 0).numpy()


def test_tiled_synthesis_matches_whole_image(small_tiles: None) -> None:
    model = _trained_looking()
    q = np.random.default_rng(3).integers(-6, 7, (32, 7, 10), dtype=np.int32)
    tiled = tiling.synthesise(model, q, 0.5)
    assert tiled.shape == (7 * 16, 10 * 16, 3) and tiled.dtype == np.uint8
    assert np.abs(tiled.astype(int) - _whole_synthesis(model, q, 0.5)).max() <= 1


def test_synthesis_of_leading_channels_zero_fills_the_rest(small_tiles: None) -> None:
    """Symbols of the kept groups only (a truncated file) decode as if the rest were zero."""
    model = _trained_looking()
    q = np.random.default_rng(4).integers(-6, 7, (8, 5, 4), dtype=np.int32)
    full = np.zeros((32, 5, 4), dtype=np.int32)
    full[:8] = q
    assert np.array_equal(tiling.synthesise(model, q, 1.5), tiling.synthesise(model, full, 1.5))


def test_synthesis_with_gradient_gives_the_decoders_pixels_and_the_whole_gradient(small_tiles: None) -> None:
    """Tile by tile, as the decoder runs it: the same pixels as ``synthesise``, and the same
    gradient as one whole-image pass; the padding the decoder crops counts for nothing."""
    model = _trained_looking()
    rng = np.random.default_rng(5)
    q = rng.integers(-6, 7, (24, 7, 10), dtype=np.int32)           # leading channels only
    weights = np.linspace(1.0, 1.5, 32)
    reference = rng.integers(0, 256, (7 * 16 - 5, 10 * 16 - 9, 3), dtype=np.uint8)
    pixels, gradient = tiling.synthesise_with_gradient(model, q, 0.5, reference, weights=weights)
    assert np.array_equal(pixels, tiling.synthesise(model, q, 0.5, True, weights=weights))

    y = torch.zeros(1, 32, 7, 10)
    y[0, :24] = torch.from_numpy(q).float() * 0.5 * torch.from_numpy(weights[:24, None, None]).float()
    leaf = y[:, :24].clone().requires_grad_(True)
    x = model.g_s(torch.cat([leaf, y[:, 24:]], dim=1), 0.5).clamp(0, 1)
    x = x[0, :, : reference.shape[0], : reference.shape[1]]
    error = (x - torch.from_numpy(reference).permute(2, 0, 1).float() / 255).square().sum()
    (whole,) = torch.autograd.grad(error, leaf)
    assert gradient.shape == q.shape
    assert np.allclose(gradient, whole[0].numpy(), rtol=1e-3, atol=1e-5 * np.abs(gradient).max())
