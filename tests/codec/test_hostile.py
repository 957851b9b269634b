"""Random corruptions and truncations of valid files raise AicFormatError and nothing else."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aic_worker.codec import AicFormatError, Codec, bitstream, entropy, step_profile
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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_payloads_with_valid_checksums_never_crash(codec: Codec, valid: bytes, data: st.DataObject) -> None:
    """A crafted file passes every CRC: the entropy decoder itself must refuse bad payloads."""
    f = bitstream.unpack(valid)
    groups = list(f.groups)
    g = data.draw(st.integers(0, len(groups) - 1))
    if data.draw(st.booleans()):
        groups[g] = data.draw(st.binary(max_size=64).map(lambda b: b[: len(b) // 4 * 4]))
    else:
        blob = bytearray(groups[g])
        if blob:
            pos = data.draw(st.integers(0, len(blob) - 1))
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        groups[g] = bytes(blob)
    crafted = bitstream.pack(replace(f, groups=groups))
    with contextlib.suppress(AicFormatError):
        codec.decompress(crafted)


@pytest.mark.parametrize("version", bitstream.SUPPORTED_VERSIONS)
def test_random_payload_words_raise_only_format_errors(version: int) -> None:
    """Some word sequences make constriction fail an assertion (seen with seeds 72, 83, 91):
    that must reach callers as AicFormatError, like every other bad payload."""
    for seed in range(120):
        rng = np.random.default_rng(seed)
        payload = rng.bytes(4 * int(rng.integers(1, 40)))
        with contextlib.suppress(AicFormatError):
            entropy.decode([payload], 32, 8, 10, 12, version=version)


def _crafted(valid: bytes, **header: object) -> bytes:
    """``valid`` with header fields replaced and no metadata, repacked with valid checksums."""
    f = bitstream.unpack(valid)
    return bitstream.pack(bitstream.AicFile(replace(f.header, **header), {}, f.groups))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "XYZ", "I;16S", "BGR;24", "PA"])
def test_a_mode_without_its_blocks_or_unknown_to_aic_is_a_format_error(
    codec: Codec, valid: bytes, mode: str
) -> None:
    with pytest.raises(AicFormatError, match=r"alpha block|not one AIC writes"):
        codec.decompress(_crafted(valid, mode=mode))


def test_a_tiny_file_claiming_a_huge_image_is_refused_before_decoding(codec: Codec, valid: bytes) -> None:
    f = bitstream.unpack(valid)
    header = replace(f.header, width=8192, height=8192, latent_width=512, latent_height=512)
    data = bitstream.pack(bitstream.AicFile(header, {}, []))
    assert len(data) < 100
    with pytest.raises(AicFormatError, match="no AIC encoder writes"):
        codec.check(data)


def test_a_file_too_sparse_for_readers_is_padded_by_the_writer(codec: Codec, valid: bytes) -> None:
    """What a nearly flat huge image can come to: a header and next to no payload."""
    from aic_worker.codec.codec import MAX_FILE_RATIO, _padded

    f = bitstream.unpack(valid)
    header = replace(f.header, width=2048, height=1536, latent_width=128, latent_height=96, mode="RGB")
    data = _padded(bitstream.AicFile(header, {}, []))
    assert len(data) >= 2048 * 1536 * 3 / MAX_FILE_RATIO
    assert "pad" in bitstream.unpack(data).metadata
    assert codec.decompress(data).size == (2048, 1536)


def test_sparse_files_of_versions_before_the_bound_still_decode(codec: Codec, valid: bytes) -> None:
    """Release 0.2.0 wrote an 81-byte version-2 file for a flat 1024x1024 image at ratio 20000:
    it must still decode (invariant 4), so the bound starts with version 3."""
    f = bitstream.unpack(valid)
    header = replace(f.header, width=1024, height=1024, latent_width=64, latent_height=64, mode="RGB",
                     version=2, step_code=step_profile.with_tilt(f.header.step_code, 0))
    data = bitstream.pack(bitstream.AicFile(header, {}, []))
    assert 1024 * 1024 * 3 / len(data) > 16384
    assert codec.decompress(data).size == (1024, 1024)


def test_a_truncation_too_sparse_for_readers_is_padded(codec: Codec, valid: bytes) -> None:
    f = bitstream.unpack(valid)
    header = replace(f.header, width=1024, height=1024, latent_width=64, latent_height=64, mode="RGB")
    data = bitstream.pack(bitstream.AicFile(header, {}, [b"\0" * 8, b"\0" * 4000]))
    out = codec.truncate(data, 4000)
    assert 1024 * 1024 * 3 / 16384 <= len(out) <= 1024 * 1024 * 3 / 4000
    assert len(codec.check(out).groups) == 1 and "pad" in bitstream.unpack(out).metadata


def test_ratios_beyond_what_aic_writes_are_refused(codec: Codec, valid: bytes) -> None:
    with pytest.raises(ValueError, match="above the highest"):
        codec.compress(photo_like(40, 32), 5000)
    with pytest.raises(ValueError, match="above the highest"):
        codec.truncate(valid, 5000)


# Found by bench/fuzz.py (atheris, resealed input): an RGBA file whose alpha block is a PNG with an
# IHDR chunk declared 5 bytes long, under a valid CRC. Pillow raises a plain ValueError
# ("Truncated IHDR chunk") from Image.open, which _alpha does not turn into AicFormatError.
FUZZ_TRUNCATED_IHDR_ALPHA = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x05IHDR\x00\x00\x00@\x00\x00\x00@\x08\x00\x00\x00\x00\x8f\x02.\x02"
    b"\x00\x00\x00+IDATx\xda\xed\xcc1\x11\x00\x00\x08\x04\xa0\xd7\xfe\x9d5\x84\x9b\x07\x01\xa8\xc9MG "
    b"\x10\x08\x04\x02\x81@ \x10\x08\x04\x02\xc1\xf3`\x01P-\x01\x7f8\x9f>\xdb\x00\x00\x00\x00IEND\xaeB`\x82"
)


def test_an_alpha_block_with_a_truncated_png_header_is_a_format_error(codec: Codec, valid: bytes) -> None:
    f = bitstream.unpack(valid)
    assert f.header.mode == "RGBA"
    data = bitstream.pack(bitstream.AicFile(f.header, {**f.metadata, "alpha": FUZZ_TRUNCATED_IHDR_ALPHA},
                                            f.groups))
    with pytest.raises(AicFormatError, match="alpha"):
        codec.decompress(data)


def test_a_step_profile_in_a_file_older_than_version_4_is_refused(codec: Codec, valid: bytes) -> None:
    f = bitstream.unpack(valid)
    older = replace(f.header, version=3, step_code=step_profile.with_tilt(f.header.step_code, 1))
    crafted = bitstream.pack(bitstream.AicFile(older, f.metadata, f.groups))
    with pytest.raises(AicFormatError, match="step profile, which version 3 lacks"):
        codec.decompress(crafted)
    with pytest.raises(AicFormatError, match="step profile, which version 3 lacks"):
        codec.truncate(crafted, 2 * f.header.achieved_ratio)   # nor cut down into another such file
