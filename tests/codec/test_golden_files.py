"""Golden files: what an earlier release wrote must decode to the same symbols and pixels forever.

A change to any entropy table, context rule or side-information code breaks these tests
instead of passing the suite silently (invariant 4). The version-1 golden file is checked
in ``test_prediction.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from aic_worker.codec import Codec, bitstream, entropy
from aic_worker.codec.quality import psnr
from aic_worker.model_choice import shipped_weights
from tests.codec.conftest import photo_like

FIXTURES = Path(__file__).parent / "fixtures"
# (file, format version, sha256 of its decoded symbols as little-endian int32, PSNR when written).
# Each was written by ``Codec.compress(photo_like(72, 40, seed=5), 6)`` of the release named.
GOLDEN = [
    # release 0.2.0 (commit a6b7589, 2026-11-28), model 3e893778…
    ("v2-3e893778-72x40.aic", 2, "01fd9b9c71d5180b4951db2ca2a6a13ad985b00607b256a083720430d6f6da8a", 27.93),
    # release 0.3.0 (format version 3: integer context features), model 3e893778…
    ("v3-3e893778-72x40.aic", 3, "c6189bfe831170f4900df8b7a494af90b4a9af0ddb7b984987922ce5526e571a", 28.04),
    # release 0.5.0 (format version 4: the step profile, tilt code 4), model 3e893778…
    ("v4-3e893778-72x40.aic", 4, "74e96fcc3bc599d41fc0421441f53a8d7315c8d11d5bea9fcdd9c25d7859b195", 28.00),
]


@pytest.mark.parametrize(("name", "version", "symbols_sha256", "written_psnr"), GOLDEN)
def test_a_golden_file_decodes_to_the_same_symbols_and_pixels(
    name: str, version: int, symbols_sha256: str, written_psnr: float
) -> None:
    data = (FIXTURES / name).read_bytes()
    f = bitstream.unpack(data)
    hd = f.header
    assert hd.version == version
    shape = (hd.latent_channels, hd.group_size, hd.latent_height, hd.latent_width)
    q = entropy.decode(f.groups, *shape, version=version)
    assert hashlib.sha256(np.ascontiguousarray(q, dtype="<i4").tobytes()).hexdigest() == symbols_sha256
    kept = q[: len(f.groups) * hd.group_size]
    assert entropy.encode(kept, hd.group_size, version=version) == f.groups   # still written alike
    weights = shipped_weights(hd.model_id.hex())
    assert weights is not None, f"the model of {name} is no longer shipped"
    image = Codec.load(weights, device="cpu").decompress(data)
    assert image.size == (72, 40)
    original = np.asarray(photo_like(72, 40, seed=5))
    assert psnr(original, np.asarray(image)) == pytest.approx(written_psnr, abs=0.01)
