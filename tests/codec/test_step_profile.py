"""Format version 4's step profile: later channels quantised more coarsely, named by the file."""

from __future__ import annotations

import numpy as np
import pytest

from aic_worker.codec import Codec, bitstream, entropy, rate_control, step_profile, tiling
from tests.codec.conftest import photo_like


def test_the_profile_rises_from_one_to_one_plus_a_over_the_ramp() -> None:
    w = step_profile.weights(4, 200)
    assert w.dtype == np.float32 and w[0] == 1
    assert np.all(np.diff(w) >= 0)
    assert w[step_profile.RAMP] == w[-1] == pytest.approx(1.5)
    assert np.array_equal(step_profile.weights(0, 50), np.ones(50, np.float32))


def test_the_profile_is_the_formula_docs_format_md_gives() -> None:
    """w_k = 1 + (t/8)·min(1, k/96) in float32, pinned by value: a file decodes the same forever."""
    w4, w13 = step_profile.weights(4, 800), step_profile.weights(13, 800)
    assert w4[48] == np.float32(1.25) and w4[24] == np.float32(1.125)
    assert w4[95] == np.float32(1) + np.float32(0.5) * (np.float32(95) / np.float32(96)) < 1.5
    assert w4[96] == w4[767] == np.float32(1.5)
    assert w13[32] == np.float32(1) + np.float32(1.625) * (np.float32(32) / np.float32(96))
    assert w13[799] == np.float32(2.625)


def test_the_tilt_lives_beside_the_step_code_and_the_filter_flag() -> None:
    code = rate_control.CODE_MAX | rate_control.PLAIN
    tilted = step_profile.with_tilt(code, step_profile.TILT_MAX)
    assert step_profile.tilt_of(tilted) == step_profile.TILT_MAX
    assert rate_control.split_code(tilted) == (rate_control.CODE_MAX, False)
    assert step_profile.with_tilt(tilted, 0) == code
    with pytest.raises(ValueError, match="outside"):
        step_profile.with_tilt(code, step_profile.TILT_MAX + 1)


def _shape(hd: bitstream.AicHeader) -> tuple[int, int, int, int]:
    return hd.latent_channels, hd.group_size, hd.latent_height, hd.latent_width


@pytest.mark.parametrize("tilt", [0, 4, 13])
def test_a_file_decodes_with_the_steps_its_header_names(codec: Codec, tilt: int) -> None:
    """Symbols of channel k are dequantised with Δ·w_k of the file's own tilt, whatever the
    encoder's default: the decoder reads the profile from the file."""
    img = photo_like(64, 48, seed=3)
    codec.tilt = tilt
    try:
        data = codec.compress(img, ratio=8)
    finally:
        codec.tilt = step_profile.DEFAULT_TILT
    f = codec.check(data)
    hd = f.header
    assert hd.version == 4 and step_profile.tilt_of(hd.step_code) == tilt
    q = entropy.decode(f.groups, *_shape(hd), version=4)
    code, filtered = rate_control.split_code(hd.step_code)
    weights = step_profile.weights(tilt, q.shape[0])
    expected = tiling.synthesise(codec.model, q, rate_control.step_of(code), filtered, codec.device, weights)
    assert np.array_equal(np.asarray(codec.decompress(data)), expected[:48, :64])
    if tilt:   # the profile changes the pixels: a decoder ignoring it would be caught
        plain = tiling.synthesise(codec.model, q, rate_control.step_of(code), filtered, codec.device)
        assert not np.array_equal(plain[:48, :64], expected[:48, :64])


def test_the_encoder_quantises_the_latent_divided_by_the_profile(codec: Codec) -> None:
    img = photo_like(48, 32, seed=4)
    data = codec.compress(img, ratio=6)
    hd = bitstream.unpack(data).header
    assert step_profile.tilt_of(hd.step_code) == step_profile.DEFAULT_TILT
    y = codec.latent(np.asarray(img))
    tilted = y / step_profile.weights(step_profile.DEFAULT_TILT, y.shape[0])[:, None, None]
    expected, _ = rate_control.quantised(
        tilted, rate_control.split_code(hd.step_code)[0], hd.group_size, prices=codec.prices
    )
    f = codec.check(data)
    got = entropy.decode(f.groups, *_shape(hd), version=4)
    assert np.array_equal(got[: expected.shape[0]], expected)
