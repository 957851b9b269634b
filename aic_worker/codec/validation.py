"""Checks of a ``.aic`` file that need no model: run on every read before anything is decoded.

``Codec.check`` adds the model's part (model id, latent layout); ``aic-admin info`` shows
only files that pass these, so it never prints fields a decoder would refuse.
"""

from __future__ import annotations

from PIL import Image

from aic_worker.codec import bitstream, image_modes, rate_control, step_profile
from aic_worker.codec.errors import AicFormatError

# A file of format version 3 or later may claim at most this many raw RGB bytes per byte
# of its own: a reader refuses more before decoding, so a tiny hostile file cannot buy a
# huge synthesis (an 81-byte header claiming 8192x8192 took 11 s). The encoder pads the
# rare file of a nearly flat huge image up to it with a "pad" metadata block, which the
# ratio counts honestly. Versions 1 and 2 were written without that bound (release 0.2.0
# wrote an 81-byte file for a flat 1024x1024 image at ratio 20000), so they keep only the
# pixel limits: refusing them would break invariant 4.
MAX_FILE_RATIO = 16384
BOUNDED_FROM_VERSION = 3
TILTED_FROM_VERSION = 4    # step_code carries a step profile's tilt (step_profile)


def validate(data: bytes) -> bitstream.AicFile:
    """Unpack ``data`` and check all that needs no model, before any big allocation."""
    f = bitstream.unpack(data)
    hd = f.header
    if hd.width * hd.height > 2 * (Image.MAX_IMAGE_PIXELS or 1 << 62):
        raise AicFormatError(f"image of {hd.width}x{hd.height} exceeds the decompression-bomb limit")
    if not rate_control.CODE_MIN <= rate_control.split_code(hd.step_code)[0] <= rate_control.CODE_MAX:
        raise AicFormatError(f"quantisation step code {hd.step_code} is out of range")
    if hd.version < TILTED_FROM_VERSION and step_profile.tilt_of(hd.step_code):
        raise AicFormatError(
            f"step code {hd.step_code} has a step profile, which version {hd.version} lacks"
        )
    if hd.mode not in image_modes.STORED:
        raise AicFormatError(f"image mode {hd.mode!r} is not one AIC writes")
    if hd.version >= BOUNDED_FROM_VERSION and hd.width * hd.height * 3 > MAX_FILE_RATIO * len(data):
        raise AicFormatError(
            f"file of {len(data)} bytes claims a {hd.width}x{hd.height} image: "
            f"more than {MAX_FILE_RATIO} raw bytes per byte, which no AIC encoder writes"
        )
    return f
