"""Invariant 4: the entropy decoder's symbols never depend on float math or thread count."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from aic_worker.codec import Codec, bitstream, entropy, laplace_tables, rate_control, step_profile
from tests.codec.conftest import photo_like


def _symbols(f: bitstream.AicFile) -> np.ndarray:
    hd = f.header
    return entropy.decode(
        f.groups, hd.latent_channels, hd.group_size, hd.latent_height, hd.latent_width, version=hd.version
    )


def test_encode_one_thread_decode_two(codec: Codec) -> None:
    img = photo_like(80, 48, seed=2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        data = codec.compress(img, ratio=10)
        y = codec.latent(np.asarray(img))
        torch.set_num_threads(2)
        f = codec.check(data)
        code = f.header.step_code
        tilted = y / step_profile.weights(step_profile.tilt_of(code), y.shape[0])[:, None, None]
        expected, _ = rate_control.quantised(
            tilted, rate_control.split_code(code)[0], f.header.group_size, prices=codec.prices
        )
        got = _symbols(f)
        assert np.array_equal(got[: expected.shape[0]], expected)
        assert not got[expected.shape[0] :].any()
        out = np.asarray(codec.decompress(data), dtype=np.int16)
        torch.set_num_threads(1)
        again = np.asarray(codec.decompress(data), dtype=np.int16)
    finally:
        torch.set_num_threads(before)
    assert np.abs(out - again).max() <= 1


def test_the_entropy_decoder_cannot_reach_the_model_or_torch() -> None:
    """Symbols are a function of the file's bytes alone: the entropy coder and everything it
    imports run without torch, so no float model can decide a probability. (Perturbing the
    model's weights, as this test once did, could never have changed a symbol.)"""
    code = (
        "import sys; import aic_worker.codec.entropy as e, aic_worker.codec.bitstream; "
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('aic'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_shipped_tables_are_the_pinned_integers() -> None:
    digest = hashlib.sha256(laplace_tables.TABLE_FILE.read_bytes()).hexdigest()
    assert digest == laplace_tables.TABLE_SHA256
    freq = laplace_tables.frequencies()
    assert freq.dtype.kind == "i" and freq.min() >= 1
    assert np.abs(freq - laplace_tables.build_tables()).max() <= 1
