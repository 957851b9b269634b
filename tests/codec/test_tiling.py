"""Tiles with halos stitch to exactly the whole-image result (no seams)."""

from __future__ import annotations

import pytest
import torch

from aic_worker.codec import tiling
from tests.codec.conftest import make_model


@pytest.fixture
def small_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiling, "TILE", 3)


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
    x = torch.rand(1, 3, 16 * 8, 16 * 11)
    with torch.inference_mode():
        whole = model.g_a(x)
    tiled = tiling.analyse(model, x)
    assert torch.allclose(whole, tiled, atol=1e-4)


def test_tiled_synthesis_matches_whole_image(small_tiles: None) -> None:
    model = _trained_looking()
    y = torch.randn(1, 32, 7, 10)
    with torch.inference_mode():
        whole = model.g_s(y, 2.5).clamp(0, 1)
    tiled = tiling.synthesise(model, y, 2.5)
    assert torch.allclose(whole, tiled, atol=1e-4)
