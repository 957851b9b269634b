"""The .aic container: round trips, truncation, every validation rule, and fuzzing.

Hostile files are built here by hand (``_raw``) straight from docs/format.md,
so these tests also pin the byte layout independently of the writer.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aic_worker.codec.bitstream import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    MAX_PIXELS,
    SUPPORTED_VERSIONS,
    AicFile,
    AicHeader,
    file_overhead,
    group_section_overhead,
    pack,
    truncate_groups,
    unpack,
)
from aic_worker.codec.errors import AicFormatError

MODEL_ID = bytes(range(32))


def _header(**changes: object) -> AicHeader:
    base = AicHeader(
        model_id=MODEL_ID,
        width=100,
        height=50,
        mode="RGB",
        target_ratio=12.0,
        achieved_ratio=0.0,
        step_code=3,
        latent_channels=16,
        group_size=4,
        latent_height=4,
        latent_width=7,
    )
    return replace(base, **changes)


def _file(**changes: object) -> AicFile:
    base = AicFile(
        header=_header(),
        metadata={"exif": b"Exif\0\0data", "icc": b""},
        groups=[b"\x01\x02\x03", b"", bytes(range(256)) * 2],
    )
    return replace(base, **changes)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _meta_block(name: bytes, payload: bytes, *, length: bytes | None = None, crc: int | None = None) -> bytes:
    crc = zlib.crc32(name + payload) if crc is None else crc
    length = _varint(len(payload)) if length is None else length
    return b"M" + bytes([len(name)]) + name + length + payload + struct.pack("<I", crc)


def _group(payload: bytes, *, length: bytes | None = None, crc: int | None = None) -> bytes:
    crc = zlib.crc32(payload) if crc is None else crc
    length = _varint(len(payload)) if length is None else length
    return b"G" + length + payload + struct.pack("<I", crc)


def _raw(
    sections: bytes = b"",
    *,
    n_groups: int = 0,
    n_meta: int = 0,
    version: int = FORMAT_VERSION,
    achieved: float | None = None,
    mode: bytes = b"RGB",
    crc_delta: int = 0,
    **fields: object,
) -> bytes:
    """A file built from the spec, with any field overridden and a correct header CRC unless told."""
    v = {
        "width": 100,
        "height": 50,
        "target": 12.0,
        "step": 3,
        "channels": 16,
        "group_size": 4,
        "lh": 4,
        "lw": 7,
        **fields,
    }
    if achieved is None:
        achieved = v["width"] * v["height"] * 3 / (HEADER_SIZE + len(sections))
    body = struct.pack(
        "<B32sHH16sffHHBHHHB",
        version,
        MODEL_ID,
        v["width"],
        v["height"],
        mode,
        v["target"],
        achieved,
        v["step"],
        v["channels"],
        v["group_size"],
        v["lh"],
        v["lw"],
        n_groups,
        n_meta,
    )
    crc = (zlib.crc32(body) + crc_delta) & 0xFFFFFFFF
    return MAGIC + body + struct.pack("<I", crc) + sections


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _rejects(data: bytes, match: str) -> None:
    with pytest.raises(AicFormatError, match=match):
        unpack(data)


# ---------------------------------------------------------------- round trips


def test_constants() -> None:
    assert MAGIC == b"\x89AIC"
    assert FORMAT_VERSION == 4 and SUPPORTED_VERSIONS == (1, 2, 3, 4)
    assert HEADER_SIZE == 81
    assert MAX_PIXELS == 1 << 28
    assert issubclass(AicFormatError, ValueError)


def test_round_trip_with_metadata_and_groups() -> None:
    f = _file()
    data = pack(f)
    g = unpack(data)
    assert g == replace(f, header=replace(f.header, achieved_ratio=_f32(100 * 50 * 3 / len(data))))
    assert list(g.metadata) == ["exif", "icc"]  # file order is kept
    assert pack(g) == data


def test_round_trip_empty() -> None:
    f = _file(metadata={}, groups=[])
    data = pack(f)
    assert len(data) == HEADER_SIZE
    g = unpack(data)
    assert g.metadata == {} and g.groups == []
    assert g.header.achieved_ratio == _f32(100 * 50 * 3 / HEADER_SIZE)


def test_pack_matches_the_spec_byte_for_byte() -> None:
    f = _file(metadata={"exif": b"abc"}, groups=[b"xy", b""])
    sections = _meta_block(b"exif", b"abc") + _group(b"xy") + _group(b"")
    assert pack(f) == _raw(sections, n_groups=2, n_meta=1)


def test_achieved_ratio_is_replaced_and_does_not_change_the_size() -> None:
    a = pack(_file(header=_header(achieved_ratio=0.0)))
    b = pack(_file(header=_header(achieved_ratio=1e30)))
    assert a == b


def test_round_trip_odd_modes_and_sizes() -> None:
    for mode in ("I;16", "CMYK", "P", "LA", "RGBA", "BGR;15", "A" * 16):
        h = _header(mode=mode, width=1, height=1, latent_height=1, latent_width=1, step_code=65535)
        assert unpack(pack(AicFile(h, {}, []))).header.mode == mode
    h = _header(width=65535, height=4096, latent_width=4096, latent_height=256)
    assert unpack(pack(AicFile(h, {}, []))).header.width == 65535


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16383, 16384, 70000])
def test_file_overhead_matches_pack(size: int) -> None:
    f = _file(metadata={"info": b"i" * size, "x": b""}, groups=[b"g" * size, b"", b"h" * (size // 2)])
    assert file_overhead(f) == len(pack(f)) - sum(len(g) for g in f.groups)
    assert group_section_overhead(size) == len(_group(b"g" * size)) - size


def test_bytes_like_input_is_accepted() -> None:
    data = pack(_file())
    assert unpack(bytearray(data)) == unpack(memoryview(data)) == unpack(data)
    with pytest.raises(TypeError):
        unpack("not bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------- truncation


@pytest.mark.parametrize("keep", [0, 1, 2, 3])
def test_truncate_groups_equals_packing_fewer_groups(keep: int) -> None:
    f = _file()
    data = pack(f)
    cut = truncate_groups(data, keep, 40.0)
    expected = replace(f, header=replace(f.header, target_ratio=40.0), groups=f.groups[:keep])
    assert cut == pack(expected)
    assert cut[HEADER_SIZE:] == data[HEADER_SIZE : len(cut)]  # payloads copied byte for byte
    g = unpack(cut)
    assert g.groups == f.groups[:keep]
    assert g.header.target_ratio == 40.0
    assert g.header.achieved_ratio == _f32(100 * 50 * 3 / len(cut))


def test_truncate_groups_twice() -> None:
    data = pack(_file())
    assert truncate_groups(truncate_groups(data, 2, 20.0), 1, 30.0) == truncate_groups(data, 1, 30.0)


def test_truncate_groups_rejects_bad_arguments() -> None:
    data = pack(_file())
    for keep in (-1, 4):
        with pytest.raises(ValueError, match="cannot keep") as info:
            truncate_groups(data, keep, 10.0)
        assert not isinstance(info.value, AicFormatError)
    for ratio in (math.nan, math.inf, -1.0, 1e39):
        with pytest.raises(ValueError, match="target ratio"):
            truncate_groups(data, 1, ratio)
    with pytest.raises(TypeError):
        truncate_groups(data, 1.0, 10.0)  # type: ignore[arg-type]


def test_truncate_groups_rejects_bad_files() -> None:
    data = pack(_file())
    with pytest.raises(AicFormatError, match="truncated"):
        truncate_groups(data[:-1], 1, 10.0)
    broken = bytearray(data)
    broken[-10] ^= 1
    with pytest.raises(AicFormatError, match="group 2 CRC"):
        truncate_groups(bytes(broken), 1, 10.0)


# ---------------------------------------------------------------- validation


def test_magic_and_version() -> None:
    _rejects(b"", "truncated")
    _rejects(b"\x89AI", "truncated")
    _rejects(b"\x89PNG\r\n\x1a\n" + bytes(100), "not an .aic file")
    _rejects(b"GIF89a", "not an .aic file")
    _rejects(MAGIC, "version byte is missing")
    for version in (0, 5, 255):
        _rejects(_raw(version=version), rf"unsupported .aic version {version}: .*supports version 1, 2, 3, 4")
    for version in SUPPORTED_VERSIONS:      # each file keeps its own version through unpack and truncation
        data = pack(_file(header=_header(version=version)))
        assert unpack(data).header.version == version
        assert unpack(truncate_groups(data, 1, 99.0)).header.version == version



def test_header_truncated_and_crc() -> None:
    data = _raw()
    for n in (5, 40, HEADER_SIZE - 1):
        _rejects(data[:n], f"truncated .aic file: header needs {HEADER_SIZE} bytes, {n} left")
    _rejects(_raw(crc_delta=1), "header CRC mismatch")
    for i in range(len(MAGIC) + 1, HEADER_SIZE):  # every header byte after the version is covered
        broken = bytearray(data)
        broken[i] ^= 0x10
        _rejects(bytes(broken), "header CRC mismatch")


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"width": 0, "lw": 0}, "outside 1..65535"),
        ({"height": 0, "lh": 0}, "outside 1..65535"),
        ({"width": 65535, "height": 65535, "lw": 4096, "lh": 4096}, "exceeds the limit"),
        ({"width": 16385, "height": 16384, "lw": 1025, "lh": 1024}, "exceeds the limit"),
        ({"target": math.nan}, "target ratio"),
        ({"target": math.inf}, "target ratio"),
        ({"target": -1.0}, "target ratio"),
        ({"channels": 0}, "latent channels"),
        ({"group_size": 0}, "group size 0"),
        ({"channels": 16, "group_size": 5}, "does not divide"),
        ({"lh": 5}, "latent size"),
        ({"lw": 6}, "latent size"),
        ({"width": 96, "lw": 7}, "expected 6x4"),
    ],
)
def test_header_fields(fields: dict[str, object], match: str) -> None:
    _rejects(_raw(**fields), f"invalid .aic header: .*{match}")


def test_largest_image_is_accepted() -> None:
    data = _raw(width=16384, height=16384, lw=1024, lh=1024)
    assert unpack(data).header.width * unpack(data).header.height == MAX_PIXELS


@pytest.mark.parametrize("mode", [b"", b"RG\0B", b"RGB\0x", b"R B", b"\xffRGB", b"\x01"])
def test_mode_field(mode: bytes) -> None:
    _rejects(_raw(mode=mode), "invalid .aic header: mode")


def test_too_many_groups() -> None:
    # 16 channels in groups of 4 allow 4 groups
    sections = b"".join(_group(b"x") for _ in range(5))
    _rejects(_raw(sections, n_groups=5), "5 groups but 16 channels in groups of 4 allow at most 4")
    sections = b"".join(_group(b"x") for _ in range(4))
    assert len(unpack(_raw(sections, n_groups=4)).groups) == 4


def test_truncated_sections() -> None:
    g1 = _group(b"a" * 1200)
    data = _raw(_group(b"") + g1, n_groups=2)
    assert len(unpack(data).groups) == 2
    cut = data[: HEADER_SIZE + len(_group(b"")) + 3 + 80]
    _rejects(cut, r"^truncated .aic file: group 1 needs 1204 bytes, 80 left$")
    _rejects(data[:-1], "group 1 needs 1204 bytes, 1203 left")
    _rejects(data[: HEADER_SIZE + len(_group(b""))], r"group 1 is missing \(header declares 2 groups\)")
    _rejects(data[: HEADER_SIZE + len(_group(b"")) + 2], "group 1 length is cut off")
    meta = _raw(_meta_block(b"exif", b"x" * 300), n_meta=1)
    _rejects(meta[:-5], "metadata block 'exif' needs 304 bytes, 299 left")
    _rejects(meta[: HEADER_SIZE + 1], "metadata block 0 name length needs 1 bytes, 0 left")
    _rejects(meta[: HEADER_SIZE + 4], "metadata block 0 name needs 4 bytes, 2 left")


def test_hostile_lengths_do_not_allocate() -> None:
    huge = _varint((1 << 32) - 1)
    _rejects(_raw(b"G" + huge, n_groups=1), f"group 0 needs {(1 << 32) + 3} bytes, 0 left")
    _rejects(_raw(b"G" + _varint(1 << 32), n_groups=1), "exceeds 4294967295")
    _rejects(_raw(b"G" + b"\xff" * 5 + b"\x01", n_groups=1), "longer than 5 bytes")
    _rejects(_raw(_group(b"", length=b"\x80\x00"), n_groups=1), "not minimally encoded")
    _rejects(_raw(_group(b"x", length=b"\x81\x00"), n_groups=1), "not minimally encoded")


def test_section_crcs() -> None:
    _rejects(_raw(_group(b"abc", crc=0), n_groups=1), "group 0 CRC mismatch")
    _rejects(_raw(_meta_block(b"icc", b"abc", crc=zlib.crc32(b"abc")), n_meta=1), "'icc' CRC mismatch")
    ok = _raw(_meta_block(b"icc", b"abc"), n_meta=1)
    assert unpack(ok).metadata == {"icc": b"abc"}


def test_metadata_names() -> None:
    two = _meta_block(b"exif", b"a") + _meta_block(b"exif", b"b")
    _rejects(_raw(two, n_meta=2), "duplicate metadata block 'exif'")
    for name in (b"", b"a" * 17, b"ex if", b"\xc3\xa9", b"a\0"):
        _rejects(_raw(_meta_block(name, b"x"), n_meta=1), "metadata block 0 name")
    assert list(unpack(_raw(_meta_block(b"a" * 16, b""), n_meta=1)).metadata) == ["a" * 16]


def test_section_kinds_and_order() -> None:
    meta, grp = _meta_block(b"exif", b"x"), _group(b"y")
    _rejects(_raw(grp + meta, n_groups=1, n_meta=1), "expected metadata block 0 .*found byte 0x47")
    _rejects(_raw(b"X" + grp[1:], n_groups=1), "expected group 0 .*found byte 0x58")
    _rejects(_raw(meta + meta, n_meta=1), "trailing bytes")
    assert unpack(_raw(meta + grp, n_groups=1, n_meta=1)).groups == [b"y"]


def test_section_count_must_match_header() -> None:
    grp = _group(b"y")
    _rejects(_raw(grp + grp, n_groups=1), "7 trailing bytes after the last section")
    _rejects(_raw(grp, n_groups=2), "group 1 is missing")
    _rejects(_raw(_meta_block(b"a", b""), n_meta=0), "trailing bytes")
    _rejects(_raw(_meta_block(b"a", b""), n_meta=2), "metadata block 1 is missing")


def test_achieved_ratio_must_match_length() -> None:
    grp = _group(b"y" * 10)
    exact = 100 * 50 * 3 / (HEADER_SIZE + len(grp))
    assert unpack(_raw(grp, n_groups=1, achieved=exact)).header.achieved_ratio == _f32(exact)
    assert unpack(_raw(grp, n_groups=1, achieved=exact * (1 + 2**-22))).groups == [b"y" * 10]
    _rejects(_raw(grp, n_groups=1, achieved=exact * 1.001), "header says ratio")
    _rejects(_raw(grp, n_groups=1, achieved=math.nan), "header says ratio")
    # a file cut at a section boundary with a rewritten count but a stale ratio
    _rejects(_raw(b"", achieved=exact), "header says ratio")


# ---------------------------------------------------------------- pack refuses bad values


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"model_id": b"short"}, "model_id must be 32 bytes"),
        ({"width": 0}, "outside 1..65535"),
        ({"width": 65536, "latent_width": 4096}, "outside 1..65535"),
        ({"width": 65535, "height": 65535, "latent_width": 4096, "latent_height": 4096}, "exceeds"),
        ({"mode": ""}, "mode"),
        ({"mode": "A" * 17}, "mode"),
        ({"mode": "RGB\0"}, "mode"),
        ({"mode": "RGé"}, "mode"),
        ({"mode": "R B"}, "mode"),
        ({"target_ratio": math.nan}, "target ratio"),
        ({"target_ratio": -0.5}, "target ratio"),
        ({"target_ratio": 1e39}, "target ratio"),
        ({"step_code": 65536}, "step code"),
        ({"step_code": -1}, "step code"),
        ({"latent_channels": 0}, "latent channels"),
        ({"latent_channels": 1 << 16}, "latent channels"),
        ({"group_size": 256, "latent_channels": 512}, "group size"),
        ({"group_size": 3}, "does not divide"),
        ({"latent_height": 3}, "latent size"),
    ],
)
def test_pack_refuses_invalid_headers(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        pack(_file(header=_header(**changes)))
    assert not isinstance(info.value, AicFormatError)  # a bad argument, not a bad file


def test_pack_refuses_invalid_contents() -> None:
    with pytest.raises(ValueError, match="5 groups"):
        pack(_file(groups=[b""] * 5))
    with pytest.raises(ValueError, match="256 metadata blocks"):
        pack(_file(metadata={f"m{i}": b"" for i in range(256)}))
    for name in ("", "a" * 17, "é", "a b"):
        with pytest.raises(ValueError, match="metadata name"):
            pack(_file(metadata={name: b""}))
    with pytest.raises(TypeError):
        pack(_file(groups=["text"]))  # type: ignore[list-item]
    with pytest.raises(TypeError):
        pack(_file(metadata={"exif": "text"}))  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        pack(_file(header=_header(width=100.0)))
    with pytest.raises(TypeError):
        pack(_file(header=_header(model_id="x" * 32)))
    assert len(unpack(pack(_file(metadata={f"m{i}": b"" for i in range(255)}))).metadata) == 255


# ---------------------------------------------------------------- property tests and fuzzing


@st.composite
def aic_files(draw: st.DrawFn) -> AicFile:
    width = draw(st.integers(1, 200))
    height = draw(st.integers(1, 200))
    group_size = draw(st.integers(1, 8))
    channels = group_size * draw(st.integers(1, 6))
    header = AicHeader(
        model_id=draw(st.binary(min_size=32, max_size=32)),
        width=width,
        height=height,
        mode=draw(st.sampled_from(["RGB", "RGBA", "L", "I;16", "CMYK", "P"])),
        target_ratio=draw(st.floats(0, 1000, width=32)),
        achieved_ratio=0.0,
        step_code=draw(st.integers(0, 0xFFFF)),
        latent_channels=channels,
        group_size=group_size,
        latent_height=-(-height // 16),
        latent_width=-(-width // 16),
    )
    names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16)
    metadata = draw(st.dictionaries(names, st.binary(max_size=40), max_size=3))
    groups = draw(st.lists(st.binary(max_size=150), max_size=channels // group_size))
    return AicFile(header, metadata, groups)


_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(aic_files())
def test_property_round_trip(f: AicFile) -> None:
    data = pack(f)
    g = unpack(data)
    assert g == replace(f, header=replace(f.header, achieved_ratio=g.header.achieved_ratio))
    assert g.header.achieved_ratio == _f32(f.header.width * f.header.height * 3 / len(data))
    assert pack(g) == data
    assert file_overhead(f) == len(data) - sum(map(len, f.groups))


@_FUZZ
@given(aic_files(), st.data())
def test_property_truncate(f: AicFile, data: st.DataObject) -> None:
    keep = data.draw(st.integers(0, len(f.groups)))
    cut = truncate_groups(pack(f), keep, 7.5)
    assert unpack(cut).groups == f.groups[:keep]


_mutations = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1)),
    st.tuples(st.just("cut"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=8))),
    st.tuples(st.just("delete"), st.tuples(st.integers(0, 10**6), st.integers(1, 8))),
)


def _mutate(data: bytes, mutation: tuple[str, object]) -> bytes:
    kind, arg = mutation
    out = bytearray(data)
    if kind == "flip":
        for pos, xor in arg:  # type: ignore[attr-defined]
            out[pos % len(out)] ^= xor
    elif kind == "cut":
        del out[arg % (len(out) + 1) :]  # type: ignore[operator]
    elif kind == "insert":
        pos, extra = arg  # type: ignore[misc]
        out[pos % (len(out) + 1) : pos % (len(out) + 1)] = extra
    else:
        pos, n = arg  # type: ignore[misc]
        del out[pos % len(out) : pos % len(out) + n]
    return bytes(out)


@_FUZZ
@given(aic_files(), _mutations)
def test_fuzz_damaged_files_raise_only_format_errors(f: AicFile, mutation: tuple[str, object]) -> None:
    data = pack(f)
    damaged = _mutate(data, mutation)
    try:
        g = unpack(damaged)
    except AicFormatError:
        assert damaged != data
        return
    assert damaged == data  # any real change must be caught
    assert g == unpack(data)


@_FUZZ
@given(st.binary(max_size=200), st.booleans())
def test_fuzz_random_bytes(tail: bytes, with_prefix: bool) -> None:
    with pytest.raises(AicFormatError):
        unpack((MAGIC + b"\x01" if with_prefix else b"") + tail)
