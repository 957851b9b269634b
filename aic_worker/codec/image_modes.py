"""Images as people have them → the RGB the transforms code, and back.

The learned transforms see 8-bit RGB. Everything else an image carries is kept
in named metadata blocks of the ``.aic`` file and put back on decompress:

- ``L``, ``1``: coded as grey RGB, returned in the same mode.
- ``LA``, ``RGBA``, ``PA`` and ``P`` with transparency: alpha kept losslessly (PNG in
  the ``alpha`` block). ``PA`` and transparent ``P`` come back as ``RGBA``.
- ``P``: its palette is kept; the decoded colours are mapped back onto it.
- ``CMYK``, ``YCbCr``: converted to RGB with Pillow's formulas (no colour management)
  and converted back on decompress.
- 16-bit grey (``I;16``, ``I;16B``, ``I;16L``, ``I``): reduced to 8 bits for coding and
  scaled back (×257), so precision below the top 8 bits is not kept.
- EXIF and ICC bytes are carried verbatim. Pixels are coded as stored: the EXIF
  orientation tag travels with them, so viewers show the restored file the same way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from aic_worker.codec.errors import AicFormatError

GREY = {"L", "1"}
SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I"}
CONVERTED = {"CMYK", "YCbCr"}
SUPPORTED = GREY | SIXTEEN_BIT | CONVERTED | {"RGB", "RGBA", "LA", "P", "PA"}
STORED = SUPPORTED - {"PA"}     # the modes ``prepare`` records (PA comes back as RGBA)


class UnsupportedImageError(ValueError):
    """The image's mode is one AIC cannot archive (e.g. floating-point ``F``)."""


@dataclass
class Prepared:
    rgb: np.ndarray                        # (H, W, 3) uint8
    mode: str                              # mode the restored image will have
    metadata: dict[str, bytes] = field(default_factory=dict)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def prepare(img: Image.Image) -> Prepared:
    """Split an image into coded RGB, the mode to restore and lossless side blocks."""
    if img.mode not in SUPPORTED:
        raise UnsupportedImageError(f"image mode {img.mode!r} is not supported")
    meta: dict[str, bytes] = {}
    if exif := img.info.get("exif"):
        meta["exif"] = bytes(exif)
    if icc := img.info.get("icc_profile"):
        meta["icc"] = bytes(icc)
    mode = img.mode
    if (mode == "P" and "transparency" in img.info) or mode == "PA":
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA"):
        meta["alpha"] = _png(img.getchannel("A"))
        rgb = img.convert("RGB")
    elif mode == "P":
        meta["palette"] = bytes(img.getpalette() or [])
        rgb = img.convert("RGB")
    elif mode in SIXTEEN_BIT:
        wide = np.asarray(img, dtype=np.int64)
        grey = np.clip((wide + 128) // 257, 0, 255).astype(np.uint8)
        rgb = Image.fromarray(grey).convert("RGB")
    else:
        rgb = img.convert("RGB")
    return Prepared(np.asarray(rgb, dtype=np.uint8), mode, meta)


def _alpha(meta: dict[str, bytes], size: tuple[int, int]) -> Image.Image:
    if "alpha" not in meta:
        raise AicFormatError("image mode has alpha but the file has no alpha block")
    try:
        with Image.open(io.BytesIO(meta["alpha"])) as a:
            a.load()
            if a.mode != "L" or a.size != size:
                raise AicFormatError("alpha block does not match the image")
            return a.copy()
    except AicFormatError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:  # ValueError: bad chunks
        raise AicFormatError(f"alpha block is not a valid PNG: {exc}") from exc


def restore(rgb: np.ndarray, mode: str, meta: dict[str, bytes]) -> Image.Image:
    """Rebuild the image in its original mode from decoded RGB and the side blocks."""
    if mode not in STORED:
        raise AicFormatError(f"image mode {mode!r} is not one AIC writes")
    img = Image.fromarray(rgb, "RGB")
    if mode in ("RGBA", "LA"):
        out = img.convert("L" if mode == "LA" else "RGB")
        out.putalpha(_alpha(meta, img.size))
    elif mode == "P":
        pal = meta.get("palette", b"")
        if not pal or len(pal) % 3 or len(pal) > 768:
            raise AicFormatError("palette block is missing or malformed")
        ref = Image.new("P", (1, 1))
        ref.putpalette(pal)
        out = img.quantize(palette=ref, dither=Image.Dither.NONE)
    elif mode in SIXTEEN_BIT:
        grey = np.asarray(img.convert("L"), dtype=np.int32) * 257
        out = Image.fromarray(grey.astype(np.uint16 if mode != "I" else np.int32))
        if mode != "I":
            out = out.convert(mode) if mode != "I;16" else out
    else:
        out = img.convert(mode) if mode != "RGB" else img
    if "exif" in meta:
        out.info["exif"] = meta["exif"]
    if "icc" in meta:
        out.info["icc_profile"] = meta["icc"]
    return out
