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

Which file holds a restored image (``for_file``): PNG holds ``1``, ``L``, ``LA``, ``P``,
``RGB``, ``RGBA`` and 16-bit grey (``I;16L`` and ``I;16B`` are byte orders of ``I;16``,
which PNG stores in its own); TIFF holds every mode above. By default a restored image is a
PNG, or a TIFF for ``CMYK``, ``YCbCr`` and 32-bit ``I``. Asked for PNG all the same,
``CMYK`` and ``YCbCr`` become RGB (Pillow's formulas) and ``I`` becomes ``I;16`` (its
values, 0..65535 after restore, are kept).
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
# Raw layout of each 16/32-bit grey mode: Pillow's convert() between them clips to 8 bits.
GREY_DTYPES = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I": "=i4"}
PNG_MODES = GREY | {"LA", "P", "RGB", "RGBA", "I;16", "I;16L", "I;16B"}
FILE_FORMATS = {"png": ("PNG", ".png"), "tiff": ("TIFF", ".tif")}


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
        out = Image.frombytes(mode, img.size, grey.astype(GREY_DTYPES[mode]).tobytes())
    else:
        out = img.convert(mode) if mode != "RGB" else img
    if "exif" in meta:
        out.info["exif"] = meta["exif"]
    if "icc" in meta:
        out.info["icc_profile"] = meta["icc"]
    return out


def for_file(img: Image.Image, fmt: str | None = None) -> tuple[Image.Image, str, str]:
    """``img`` ready to save as ``fmt`` ("png", "tiff"; None: PNG where it holds the mode,
    else TIFF): (image, Pillow format name, file suffix). A mode the format can't hold is
    converted as the module docstring says, so every restored mode can be written."""
    if fmt is None:
        fmt = "png" if img.mode in PNG_MODES else "tiff"
    pil_format, suffix = FILE_FORMATS[fmt]
    if fmt == "png" and img.mode not in PNG_MODES | {"I"}:
        img = _with_info(img.convert("RGB"), img)
    elif fmt == "png" and img.mode == "I":
        grey = np.clip(np.asarray(img), 0, 65535).astype("<u2")
        img = _with_info(Image.frombytes("I;16", img.size, grey.tobytes()), img)
    elif fmt == "png" and img.mode == "I;16L":  # the same bytes; PNG's writer knows only I;16
        img = _with_info(Image.frombytes("I;16", img.size, img.tobytes()), img)
    return img, pil_format, suffix


def _with_info(converted: Image.Image, original: Image.Image) -> Image.Image:
    for key in ("exif", "icc_profile"):
        if key in original.info:
            converted.info[key] = original.info[key]
    return converted
