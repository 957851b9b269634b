"""Every mode the codec stores is restored in that mode and written to a file that holds it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from aic_worker.codec import image_modes

SIXTEEN = sorted(image_modes.SIXTEEN_BIT)


def _file(img: Image.Image, fmt: str | None) -> tuple[Image.Image, str]:
    """`img` written as `for_file` says and read back; and its suffix."""
    img, pil_format, suffix = image_modes.for_file(img, fmt)
    buffer = io.BytesIO()
    img.save(buffer, format=pil_format)
    back = Image.open(io.BytesIO(buffer.getvalue()))
    back.load()
    assert back.format == pil_format
    return back, suffix


@pytest.mark.parametrize("mode", SIXTEEN)
def test_sixteen_bit_grey_comes_back_with_its_values(mode: str) -> None:
    """Pillow's convert() from I;16 to I;16B or I;16L clips to 255; restore must not."""
    grey8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgb = np.repeat(grey8[..., None], 3, axis=2)
    restored = image_modes.restore(rgb, mode, {})
    assert restored.mode == mode
    expected = grey8.astype(np.int64) * 257
    assert np.array_equal(np.asarray(restored, dtype=np.int64), expected)
    for fmt in (None, "png", "tiff"):
        back, _ = _file(restored, fmt)
        assert np.array_equal(np.asarray(back, dtype=np.int64), expected), (mode, fmt)


@pytest.mark.parametrize("mode", sorted(image_modes.STORED))
def test_the_default_file_keeps_the_mode(mode: str) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    meta = {"palette": bytes(range(48)) * 16} if mode == "P" else {}
    if mode in ("LA", "RGBA"):
        meta["alpha"] = image_modes._png(Image.new("L", (8, 8), 128))
    restored = image_modes.restore(rgb, mode, meta)
    back, suffix = _file(restored, None)
    same_values = {"I;16B": "I;16", "I;16L": "I;16"}  # PNG's 16-bit grey reads back as I;16
    assert back.mode == same_values.get(mode, mode)
    assert suffix == (".tif" if mode in ("CMYK", "YCbCr", "I") else ".png")
    png, _ = _file(restored, "png")  # PNG asked for: a documented conversion where it must
    assert png.mode == {"CMYK": "RGB", "YCbCr": "RGB", "I": "I;16"}.get(mode, same_values.get(mode, mode))
