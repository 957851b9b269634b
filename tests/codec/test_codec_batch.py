"""Codec.compress_batch: the same files as compress, image by image, and a bad image fails alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from aic_worker.codec import Codec, bitstream, tiling
from aic_worker.codec.image_modes import UnsupportedImageError
from tests.codec.conftest import photo_like

RATIOS = [24, 32, 48]


def _images() -> list[Image.Image]:
    """Two of one padded size (stacked whole), one odd size, one portrait, one converted mode."""
    return [photo_like(96, 64, seed=1), photo_like(96, 64, seed=2), photo_like(70, 50, seed=3),
            photo_like(64, 96, seed=4), photo_like(90, 64, seed=5).convert("L")]


def _ratios(n: int) -> list[float]:
    return [RATIOS[i % len(RATIOS)] for i in range(n)]


def _check_bounds(codec: Codec, image: Image.Image, data: bytes, ratio: float) -> None:
    raw = image.width * image.height * 3
    assert len(data) <= math.floor(raw / ratio)  # invariant 6
    assert bitstream.unpack(data).header.target_ratio == ratio
    assert codec.decompress(data).size == image.size


@pytest.mark.parametrize("tile", [None, 3], ids=["whole-images", "tiles"])
def test_compress_batch_gives_the_bytes_of_compress(
    codec: Codec, tile: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if tile is not None:  # tiles of 48 pixels: every image is tiled, and tiles of one shape stack
        monkeypatch.setattr(tiling, "TILE", tile)
    images, ratios = _images(), _ratios(5)
    batched = codec.compress_batch(images, ratios)
    for image, ratio, data in zip(images, ratios, batched, strict=True):
        assert isinstance(data, bytes)
        # Byte identity holds on CPU: each sample of a batched convolution is computed alone.
        assert data == codec.compress(image, ratio)
        _check_bounds(codec, image, data, ratio)


def test_latents_of_a_batch_equal_one_by_one(codec: Codec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiling, "TILE", 3)
    rgbs = [np.asarray(image.convert("RGB")) for image in _images()]
    for max_batch in (1, 2, 8):
        for rgb, y in zip(rgbs, codec.latents(rgbs, max_batch), strict=True):
            assert np.array_equal(y, codec.latent(rgb))


def test_a_bad_image_gets_its_error_and_the_others_their_files(codec: Codec) -> None:
    good = [photo_like(96, 64, seed=1), photo_like(96, 64, seed=2)]
    images = [good[0], Image.new("F", (96, 64)), good[1], photo_like(96, 64, seed=3), photo_like(96, 64)]
    ratios = [24.0, 24.0, 32.0, 4000.0, float("nan")]
    results = codec.compress_batch(images, ratios)
    assert results[0] == codec.compress(good[0], 24) and results[2] == codec.compress(good[1], 32)
    assert isinstance(results[1], UnsupportedImageError)
    assert isinstance(results[3], ValueError) and "cannot be met" in str(results[3])
    assert isinstance(results[4], ValueError) and "positive number" in str(results[4])


def test_empty_and_mismatched_batches(codec: Codec) -> None:
    assert codec.compress_batch([], []) == []
    with pytest.raises(ValueError, match="ratios"):
        codec.compress_batch([photo_like(32, 32)], [24, 32])
    with pytest.raises(ValueError, match="max_batch"):
        tiling.analyse_batch(codec.model, [], 0)
