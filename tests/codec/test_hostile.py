"""Random corruptions and truncations of valid files raise AicFormatError and nothing else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aic_worker.codec import AicFormatError, Codec
from tests.codec.conftest import photo_like


@pytest.fixture(scope="module")
def valid(codec: Codec) -> bytes:
    img = photo_like(40, 32).convert("RGBA")
    return codec.compress(img, ratio=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_flips_and_cuts_never_crash(codec: Codec, valid: bytes, data: st.DataObject) -> None:
    blob = bytearray(valid)
    kind = data.draw(st.sampled_from(["flip", "cut", "insert", "overwrite"]))
    pos = data.draw(st.integers(0, len(blob) - 1))
    if kind == "flip":
        blob[pos] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "cut":
        del blob[pos:]
    elif kind == "insert":
        blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        chunk = data.draw(st.binary(min_size=1, max_size=16))
        blob[pos : pos + len(chunk)] = chunk
    with contextlib.suppress(AicFormatError):
        codec.decompress(bytes(blob))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=300))
def test_random_bytes_are_rejected(codec: Codec, blob: bytes) -> None:
    with pytest.raises(AicFormatError):
        codec.decompress(blob)
