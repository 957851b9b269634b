"""Row prediction of smooth channels (format version 2), and version 1 files still decoding."""

from __future__ import annotations

from pathlib import Path

import constriction
import numpy as np
import pytest

from aic_worker.codec import AicFormatError, Codec, bitstream, entropy, laplace_tables, prediction
from aic_worker.codec.quality import psnr
from aic_worker.model_choice import shipped_weights
from tests.codec.conftest import photo_like

# Written by release 0.1.0 (format version 1, model 3e893778…, commit 30eab64) from
# photo_like(72, 40, seed=5) at ratio 6.
V1_FILE = Path(__file__).parent / "fixtures" / "v1-3e893778-72x40.aic"


def _smooth_then_noisy(seed: int = 0) -> np.ndarray:
    """16 channels of 9x13 symbols: eight slow ramps with big values, then eight of small noise."""
    rng = np.random.default_rng(seed)
    ramps = 400 + np.cumsum(rng.integers(-2, 3, (8, 9, 13)), axis=2) + np.arange(9)[:, None] * 3
    noise = rng.integers(-1, 2, (8, 9, 13)) * (rng.random((8, 9, 13)) < 0.3)
    return np.concatenate([ramps, noise]).astype(np.int32)


def test_restore_inverts_residuals_at_the_extremes() -> None:
    rng = np.random.default_rng(1)
    q = rng.integers(-entropy.MAX_SYMBOL, entropy.MAX_SYMBOL + 1, (3, 5, 4096)).astype(np.int32)
    assert np.array_equal(prediction.restore(prediction.residuals(q)), q)


def test_the_encoder_predicts_smooth_channels_only_and_within_range() -> None:
    q = _smooth_then_noisy()
    chosen = prediction.choose(q, entropy.MAX_SYMBOL)
    assert chosen[:8].all() and not chosen[8:].any()
    assert not prediction.choose(q, limit=1).any()      # differences that would not fit are not used


def test_symbols_replace_predicted_channels_without_copying_the_rest() -> None:
    q = _smooth_then_noisy()
    chosen = np.zeros(16, dtype=bool)
    chosen[[1, 3]] = True
    symbols = prediction.Symbols(q, chosen)
    whole = np.stack([symbols.channels(c, c + 1)[0] for c in range(16)])
    assert np.array_equal(whole[[1, 3]], prediction.residuals(q[[1, 3]]))
    assert np.array_equal(whole[[0, 2, *range(4, 16)]], q[[0, 2, *range(4, 16)]])
    assert np.array_equal(symbols.channels(2, 9), whole[2:9])
    assert np.shares_memory(symbols.channels(8, 16), q)


@pytest.mark.parametrize("version", bitstream.SUPPORTED_VERSIONS)
def test_entropy_round_trip_in_each_version(version: int) -> None:
    q = _smooth_then_noisy(2)
    payloads = entropy.encode(q, 8, version=version)
    assert np.array_equal(entropy.decode(payloads, 16, 8, 9, 13, version=version), q)


def test_encode_clips_wide_integers_instead_of_wrapping() -> None:
    q = np.zeros((8, 3, 3), dtype=np.int64)
    q[0, 0, 0], q[0, 1, 1] = 2**32 + 7, -(2**32)
    decoded = entropy.decode(entropy.encode(q, 8), 8, 8, 3, 3, version=3)
    assert decoded[0, 0, 0] == entropy.MAX_SYMBOL and decoded[0, 1, 1] == -entropy.MAX_SYMBOL


def test_version_2_codes_smooth_channels_in_fewer_bytes() -> None:
    q = _smooth_then_noisy(3)
    v1, v2 = (sum(map(len, entropy.encode(q, 8, version=v))) for v in (1, 2))
    assert v2 < 0.8 * v1
    assert entropy.estimate_bits(q, 8).sum() / 8 == pytest.approx(v2, rel=0.1)


def test_a_coded_base_out_of_range_is_a_format_error() -> None:
    enc = constriction.stream.queue.RangeEncoder()
    for _ in range(2):
        enc.encode(0, entropy._SLOPE)
    for j in range(8):
        enc.encode(0, entropy._flag_model(0 if j == 0 else 1))
    diffs = np.array([100] + [0] * 15)      # base 100: outside −64 … 63
    enc.encode((diffs + laplace_tables.LIMIT).astype(np.int32), entropy._model(entropy.SIDE_ROW))
    payload = enc.get_compressed().astype("<u4").tobytes()
    with pytest.raises(AicFormatError, match="context base outside"):
        entropy.decode([payload], 8, 8, 3, 3, version=2)


def test_a_version_1_file_of_the_last_release_decodes_as_before() -> None:
    data = V1_FILE.read_bytes()
    f = bitstream.unpack(data)
    hd = f.header
    assert hd.version == 1
    weights = shipped_weights(hd.model_id.hex())
    assert weights is not None, "the model of the version 1 fixture is no longer shipped"
    codec = Codec.load(weights, device="cpu")
    image = codec.decompress(data)
    assert image.size == (72, 40)
    assert psnr(np.asarray(photo_like(72, 40, seed=5)), np.asarray(image)) > 25   # 26.03 dB when written
    shape = (hd.latent_channels, hd.group_size, hd.latent_height, hd.latent_width)
    q = entropy.decode(f.groups, *shape, version=1)
    kept = q[: len(f.groups) * hd.group_size]
    assert entropy.encode(kept, hd.group_size, version=1) == f.groups    # this release writes v1 alike
