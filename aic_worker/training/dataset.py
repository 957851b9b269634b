"""Training crops from a folder of photos.

Every photo is downscaled at least 2x first (area filter): the training photos
are JPEGs, and at full size the model would learn JPEG's blocks and ringing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
MAX_SIDE = 1200


def find_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def load_downscaled(path: Path, min_side: int) -> np.ndarray | None:
    """The photo as uint8 HWC, downscaled ≥2x (more for huge ones); None if too small."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        factor = max(2.0, max(im.size) / MAX_SIDE)
        size = (round(im.width / factor), round(im.height / factor))
        if min(size) < min_side:
            return None
        return np.asarray(im.resize(size, Image.Resampling.BOX))


class CropSampler:
    """Random flipped crops from photos held in memory as uint8."""

    def __init__(self, images: list[np.ndarray], crop: int, seed: int = 0) -> None:
        if not images:
            raise ValueError("no training images large enough for the crop size")
        self.images = images
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self._resident: tuple[torch.device, list[torch.Tensor]] | None = None

    @classmethod
    def from_folder(cls, root: Path, crop: int, seed: int = 0) -> CropSampler:
        images = [a for p in find_images(root) if (a := load_downscaled(p, crop)) is not None]
        return cls(images, crop, seed)

    def batch(self, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``size`` random crops as floats in [0, 1] (N, 3, crop, crop), channels last, on ``device``."""
        if torch.device(device).type != "cpu":
            return self._device_batch(size, torch.device(device))
        out = np.empty((size, self.crop, self.crop, 3), dtype=np.uint8)
        for i in range(size):
            img = self.images[self.rng.integers(len(self.images))]
            y = self.rng.integers(img.shape[0] - self.crop + 1)
            x = self.rng.integers(img.shape[1] - self.crop + 1)
            tile = img[y : y + self.crop, x : x + self.crop]
            if self.rng.random() < 0.5:
                tile = tile[:, ::-1]
            out[i] = tile
        t = torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255)
        return t.contiguous(memory_format=torch.channels_last)

    def _device_batch(self, size: int, device: torch.device) -> torch.Tensor:
        """The crops ``batch`` would draw (same random draws), cut on ``device`` from the photos
        uploaded there once as bytes: a GPU step is quicker than cutting a big batch on the CPU."""
        if self._resident is None or self._resident[0] != device:
            self._resident = (device, [torch.tensor(img, device=device) for img in self.images])
        images = self._resident[1]
        tiles = []
        for _ in range(size):
            img = images[self.rng.integers(len(images))]
            y = self.rng.integers(img.shape[0] - self.crop + 1)
            x = self.rng.integers(img.shape[1] - self.crop + 1)
            tile = img[y : y + self.crop, x : x + self.crop]
            if self.rng.random() < 0.5:
                tile = tile.flip(1)
            tiles.append(tile)
        t = torch.stack(tiles).permute(0, 3, 1, 2).float().div_(255)
        return t.contiguous(memory_format=torch.channels_last)
