"""Format version 3's integer context features: decoder and encoder agree, and they pay."""

from __future__ import annotations

import numpy as np

from aic_worker.codec import Codec, bitstream, entropy, rate_control
from tests.codec.conftest import photo_like


def test_version_3_round_trips_values_past_the_decoders_clamp() -> None:
    """The decoder sums |q| clamped to 2^14, the encoder does not: bit lengths saturate alike."""
    rng = np.random.default_rng(0)
    q = (rng.laplace(0, 3, (24, 7, 11)) * (rng.random((24, 7, 11)) < 0.6)).astype(np.int32)
    q[2, 3, 4], q[5, 0, 0], q[9, 6, 10], q[17, 1, 1] = 60000, -20000, 17000, 16384
    payloads = entropy.encode(q, 8, version=3)
    assert np.array_equal(entropy.decode(payloads, 24, 8, 7, 11, version=3), q)
    assert np.array_equal(entropy.decode(payloads[:2], 24, 8, 7, 11, version=3)[:16], q[:16])   # truncated


def _patchy(seed: int) -> np.ndarray:
    """Smooth gradients with textured patches here and there: flat blocks beside busy ones,
    which the energy of a block's earlier coefficients tells apart."""
    rng = np.random.default_rng(seed)
    img = np.asarray(photo_like(256, 192, seed=seed), dtype=np.float32) * 0.3 + 90
    for _ in range(14):
        y, x, s = rng.integers(0, 160), rng.integers(0, 224), rng.integers(16, 48)
        img[y : y + s, x : x + s] += rng.normal(0, rng.uniform(5, 40), (*img[y : y + s, x : x + s].shape,))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_version_3_codes_a_photo_in_fewer_bits_than_version_2() -> None:
    codec = Codec.load(device="cpu")
    y = codec.latent(_patchy(3))
    for code in (rate_control.STEP_ONE, rate_control.STEP_ONE + 128):
        q = rate_control.quantise(y, code, codec.group_size)
        v2, v3 = (entropy.estimate_bits(q, codec.group_size, v).sum() for v in (2, 3))
        assert v3 < 0.95 * v2                       # 0.90 and 0.88 when written
        assert sum(map(len, entropy.encode(q, codec.group_size, 3))) * 8 < v2


def test_the_trade_fills_the_budget_when_the_exact_file_is_smaller_than_estimated() -> None:
    """A 72x40 photo at 6x: the estimate (4 bytes of flush per group) overshoots the exact file,
    which once fell back to the untraded file at 8.3x."""
    codec = Codec.load(device="cpu")
    data = codec.compress(photo_like(72, 40, seed=5), 6)
    assert rate_control.FILL * (72 * 40 * 3 / 6) <= len(data) <= 72 * 40 * 3 / 6
    assert bitstream.unpack(data).header.version == bitstream.FORMAT_VERSION
