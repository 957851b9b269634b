"""The ``.aic`` container, versions 1 to 4: a fixed header, named metadata blocks, channel-group sections.

The versions share this layout; they differ only inside group payloads (``entropy``) and
in what the codec reads from the header's step_code (version 4: ``step_profile``), so the
container carries each file's version through unchanged.

Pure Python (``struct`` and ``zlib`` only) so that the catalog and the watcher
can read and truncate files without importing torch, and so that every byte of
an untrusted file is checked here before any of it reaches the codec.
``docs/format.md`` is the normative description of the layout; this module is
its reference implementation.

Readers raise only :class:`AicFormatError` for bad bytes.  Writers raise
``ValueError`` (never ``AicFormatError``) for values they cannot write, and
``TypeError`` for values of the wrong type: a bad argument is the caller's bug,
not a bad file.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, replace

from aic_worker.codec.errors import AicFormatError

MAGIC = b"\x89AIC"
FORMAT_VERSION = 4
SUPPORTED_VERSIONS = (1, 2, 3, 4)

MAX_PIXELS = 1 << 28  # refuse bigger images before allocating anything
MAX_DIMENSION = 0xFFFF
LATENT_STRIDE = 16  # the transforms downsample by 16 in each direction
MODEL_ID_SIZE = 32  # sha256 of the weights file
MAX_MODE_LEN = 16
MAX_NAME_LEN = 16
MAX_METADATA_BLOCKS = 0xFF
MAX_PAYLOAD = (1 << 32) - 1  # a payload length fits in 32 bits (at most 5 varint bytes)

# version u8 | model_id 32s | width u16 | height u16 | mode 16s | target f32 | achieved f32 |
# step_code u16 | latent_channels u16 | group_size u8 | latent_height u16 | latent_width u16 |
# groups count u16 | metadata count u8
_HEADER = struct.Struct("<B32sHH16sffHHBHHHB")
_CRC = struct.Struct("<I")
_HEADER_START = len(MAGIC)
_CRC_START = _HEADER_START + _HEADER.size
HEADER_SIZE = _CRC_START + _CRC.size  # 81: magic, header fields, header CRC

KIND_METADATA = ord("M")
KIND_GROUP = ord("G")
_SECTION_CRC = _CRC.size
_F32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
# float32 rounds to within 2**-24 of the exact ratio; allow an encoder that computed it in float32.
_RATIO_TOLERANCE = 2.0**-20


@dataclass(frozen=True)
class AicHeader:
    """Everything a decoder needs before it touches a payload.

    The two ratios are stored as float32, so :func:`unpack` returns them
    rounded to float32.  ``achieved_ratio`` is an output: :func:`pack` replaces
    it with ``width * height * 3 / len(file)``.
    """

    model_id: bytes  # 32 bytes, sha256 of the model weights
    width: int  # 1..65535
    height: int  # 1..65535, width * height <= MAX_PIXELS
    mode: str  # PIL mode of the original image, printable ASCII, 1..16 chars
    target_ratio: float  # finite, >= 0 (0: encoded without a ratio target)
    achieved_ratio: float
    step_code: int  # u16, the quantisation step index (its meaning belongs to the codec)
    latent_channels: int  # u16 >= 1
    group_size: int  # u8 >= 1, divides latent_channels
    latent_height: int  # ceil(height / 16)
    latent_width: int  # ceil(width / 16)
    version: int = FORMAT_VERSION  # the payload layout; a file read keeps its own


@dataclass(frozen=True)
class AicFile:
    """A whole ``.aic`` file: header, named metadata blocks (file order), group payloads (in order)."""

    header: AicHeader
    metadata: dict[str, bytes]
    groups: list[bytes]


# ---------------------------------------------------------------- helpers


def _f32(x: float) -> float:
    """``x`` as the float32 the file will hold."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _is_name(raw: bytes, limit: int) -> bool:
    """Names and modes: 1..limit printable ASCII characters, no spaces (so they print unambiguously)."""
    return 1 <= len(raw) <= limit and all(0x21 <= b <= 0x7E for b in raw)


def _varint(n: int) -> bytes:
    """Unsigned LEB128, minimal length."""
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def group_section_overhead(payload_len: int) -> int:
    """Bytes a group section adds around a payload of ``payload_len`` bytes: kind, length, CRC."""
    return 1 + _varint_len(payload_len) + _SECTION_CRC


def _ratio(header: AicHeader, file_len: int) -> float:
    """The one definition of the compression ratio: 24-bit RGB bytes over bytes of the whole file."""
    return header.width * header.height * 3 / file_len


def _header_problem(h: AicHeader) -> str | None:
    """What is wrong with the fields both the writer and the reader check, or None."""
    if h.version not in SUPPORTED_VERSIONS:
        return f"format version {h.version} is not one of {SUPPORTED_VERSIONS}"
    if len(h.model_id) != MODEL_ID_SIZE:
        return f"model_id must be {MODEL_ID_SIZE} bytes, got {len(h.model_id)}"
    if not (1 <= h.width <= MAX_DIMENSION and 1 <= h.height <= MAX_DIMENSION):
        return f"image size {h.width}x{h.height} is outside 1..{MAX_DIMENSION}"
    if h.width * h.height > MAX_PIXELS:
        return f"image size {h.width}x{h.height} exceeds the limit of {MAX_PIXELS} pixels"
    if not math.isfinite(h.target_ratio) or not 0 <= h.target_ratio <= _F32_MAX:
        return f"target ratio {h.target_ratio!r} is not a finite non-negative float32"
    if not 0 <= h.step_code <= 0xFFFF:
        return f"step code {h.step_code} does not fit in 16 bits"
    if not 1 <= h.latent_channels <= 0xFFFF:
        return f"latent channels {h.latent_channels} is outside 1..65535"
    if not 1 <= h.group_size <= 0xFF:
        return f"group size {h.group_size} is outside 1..255"
    if h.latent_channels % h.group_size:
        return f"group size {h.group_size} does not divide {h.latent_channels} latent channels"
    want_h, want_w = -(-h.height // LATENT_STRIDE), -(-h.width // LATENT_STRIDE)
    if (h.latent_height, h.latent_width) != (want_h, want_w):
        return (
            f"latent size {h.latent_width}x{h.latent_height} does not match image size "
            f"{h.width}x{h.height} (expected {want_w}x{want_h})"
        )
    return None


def _count_problem(h: AicHeader, n_groups: int, n_meta: int) -> str | None:
    if n_groups > h.latent_channels // h.group_size:
        return (
            f"{n_groups} groups but {h.latent_channels} channels in groups of {h.group_size} "
            f"allow at most {h.latent_channels // h.group_size}"
        )
    if n_meta > MAX_METADATA_BLOCKS:
        return f"{n_meta} metadata blocks, at most {MAX_METADATA_BLOCKS} allowed"
    return None


def _pack_header(h: AicHeader, achieved: float, n_groups: int, n_meta: int) -> bytes:
    fields = _HEADER.pack(
        h.version,
        h.model_id,
        h.width,
        h.height,
        h.mode.encode("ascii"),  # struct pads with NULs to 16 bytes
        h.target_ratio,
        achieved,
        h.step_code,
        h.latent_channels,
        h.group_size,
        h.latent_height,
        h.latent_width,
        n_groups,
        n_meta,
    )
    return MAGIC + fields + _CRC.pack(zlib.crc32(fields))


# ---------------------------------------------------------------- writing


_INT_FIELDS = (
    "version",
    "width",
    "height",
    "step_code",
    "latent_channels",
    "group_size",
    "latent_height",
    "latent_width",
)


def _check_writable(f: AicFile) -> None:
    """Raise TypeError/ValueError unless ``pack(f)`` would write a file ``unpack`` accepts."""
    h = f.header
    if not isinstance(h.model_id, bytes):
        raise TypeError(f"model_id must be bytes, got {type(h.model_id).__name__}")
    for name in _INT_FIELDS:
        value = getattr(h, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not isinstance(h.target_ratio, (int, float)) or isinstance(h.target_ratio, bool):
        raise TypeError(f"target_ratio must be a float, got {type(h.target_ratio).__name__}")
    if not isinstance(h.mode, str):
        raise TypeError(f"mode must be a str, got {type(h.mode).__name__}")
    if not (h.mode.isascii() and _is_name(h.mode.encode("ascii"), MAX_MODE_LEN)):
        raise ValueError(f"cannot write .aic: mode {h.mode!r} is not 1..{MAX_MODE_LEN} printable ASCII chars")
    problem = _header_problem(h) or _count_problem(h, len(f.groups), len(f.metadata))
    if problem:
        raise ValueError(f"cannot write .aic: {problem}")
    for name, payload in f.metadata.items():
        if not isinstance(name, str) or not (name.isascii() and _is_name(name.encode("ascii"), MAX_NAME_LEN)):
            raise ValueError(
                f"cannot write .aic: metadata name {name!r} is not 1..{MAX_NAME_LEN} printable ASCII chars"
            )
        if not isinstance(payload, (bytes, bytearray)):
            raise TypeError(f"metadata {name!r} must be bytes, got {type(payload).__name__}")
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"cannot write .aic: metadata {name!r} is larger than {MAX_PAYLOAD} bytes")
    for i, g in enumerate(f.groups):
        if not isinstance(g, (bytes, bytearray)):
            raise TypeError(f"group {i} must be bytes, got {type(g).__name__}")
        if len(g) > MAX_PAYLOAD:
            raise ValueError(f"cannot write .aic: group {i} is larger than {MAX_PAYLOAD} bytes")


def pack(f: AicFile) -> bytes:
    """Serialise ``f``; ``f.header.achieved_ratio`` is ignored and the true ratio written instead.

    The ratio field has a fixed width, so the file's length (and hence the
    ratio) does not depend on the value written into it.
    """
    _check_writable(f)
    body = bytearray()
    for name, payload in f.metadata.items():
        raw = name.encode("ascii")
        body.append(KIND_METADATA)
        body.append(len(raw))
        body += raw
        body += _varint(len(payload))
        body += payload
        body += _CRC.pack(zlib.crc32(payload, zlib.crc32(raw)))
    for g in f.groups:
        body.append(KIND_GROUP)
        body += _varint(len(g))
        body += g
        body += _CRC.pack(zlib.crc32(g))
    total = HEADER_SIZE + len(body)
    head = _pack_header(f.header, _ratio(f.header, total), len(f.groups), len(f.metadata))
    return head + body  # bytes + bytearray is bytes


def file_overhead(f: AicFile) -> int:
    """``len(pack(f)) - sum(len(g) for g in f.groups)`` without building the file (for rate control).

    Assumes ``f`` is writable.  Group section overhead grows by one byte each
    time a payload length crosses a power of 128 (see :func:`group_section_overhead`).
    """
    n = HEADER_SIZE
    for name, payload in f.metadata.items():
        n += 2 + len(name) + _varint_len(len(payload)) + len(payload) + _SECTION_CRC
    for g in f.groups:
        n += group_section_overhead(len(g))
    return n


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Layout:
    """A validated file's header and where its sections lie (offsets into the data)."""

    header: AicHeader
    metadata: list[tuple[str, int, int]]  # name, payload start, payload end
    groups: list[tuple[int, int]]  # payload start, payload end
    metadata_end: int  # offset of the first group section
    group_ends: list[int]  # offset just past each group section's CRC


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f".aic data must be bytes, got {type(data).__name__}")


def _read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """Decode a minimal LEB128 length of at most 5 bytes; return (value, new position)."""
    value = 0
    for i in range(5):
        if pos >= len(data):
            raise AicFormatError(f"truncated .aic file: {what} length is cut off")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise AicFormatError(f"corrupt .aic file: {what} length is not minimally encoded")
            if value > MAX_PAYLOAD:
                raise AicFormatError(f"corrupt .aic file: {what} length {value} exceeds {MAX_PAYLOAD}")
            return value, pos
    raise AicFormatError(f"corrupt .aic file: {what} length is longer than 5 bytes")


def _expect_kind(data: bytes, pos: int, kind: int, what: str, declared: str) -> int:
    if pos >= len(data):
        raise AicFormatError(f"truncated .aic file: {what} is missing ({declared})")
    if data[pos] != kind:
        raise AicFormatError(
            f"corrupt .aic file: expected {what} (kind {chr(kind)!r}) at offset {pos}, "
            f"found byte 0x{data[pos]:02x}"
        )
    return pos + 1


def _need(data: bytes, pos: int, n: int, what: str) -> None:
    left = len(data) - pos
    if n > left:
        raise AicFormatError(f"truncated .aic file: {what} needs {n} bytes, {left} left")


def _parse_header(data: bytes) -> tuple[AicHeader, int, int]:
    """Check magic, version, CRC and fields; return (header, groups count, metadata count)."""
    if data[: len(MAGIC)] != MAGIC:
        if MAGIC.startswith(data):
            raise AicFormatError(f"truncated .aic file: {len(data)} bytes, shorter than the magic")
        raise AicFormatError(f"not an .aic file: bad magic {data[: len(MAGIC)]!r}")
    if len(data) <= _HEADER_START:
        raise AicFormatError("truncated .aic file: the version byte is missing")
    version = data[_HEADER_START]
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        raise AicFormatError(f"unsupported .aic version {version}: this reader supports version {supported}")
    _need(data, 0, HEADER_SIZE, "header")
    fields = data[_HEADER_START:_CRC_START]
    (stored_crc,) = _CRC.unpack_from(data, _CRC_START)
    if zlib.crc32(fields) != stored_crc:
        raise AicFormatError("corrupt .aic file: header CRC mismatch")
    (version, model_id, width, height, raw_mode, target, achieved, step_code, channels, group_size,
     latent_h, latent_w, n_groups, n_meta) = _HEADER.unpack(fields)  # fmt: skip
    mode_raw = raw_mode.rstrip(b"\0")
    if not _is_name(mode_raw, MAX_MODE_LEN):
        raise AicFormatError(
            f"invalid .aic header: mode {raw_mode!r} is not 1..{MAX_MODE_LEN} printable ASCII chars "
            "padded with NULs"
        )
    header = AicHeader(
        model_id=model_id,
        width=width,
        height=height,
        mode=mode_raw.decode("ascii"),
        target_ratio=target,
        achieved_ratio=achieved,
        step_code=step_code,
        latent_channels=channels,
        group_size=group_size,
        latent_height=latent_h,
        latent_width=latent_w,
        version=version,
    )
    problem = _header_problem(header) or _count_problem(header, n_groups, n_meta)
    if problem:
        raise AicFormatError(f"invalid .aic header: {problem}")
    return header, n_groups, n_meta


def _parse(data: bytes) -> _Layout:
    """Validate the whole file, touching only offsets; payloads are neither copied nor decoded."""
    header, n_groups, n_meta = _parse_header(data)
    pos = HEADER_SIZE
    metadata: list[tuple[str, int, int]] = []
    seen: set[str] = set()
    for i in range(n_meta):
        what = f"metadata block {i}"
        pos = _expect_kind(data, pos, KIND_METADATA, what, f"header declares {n_meta} metadata blocks")
        _need(data, pos, 1, f"{what} name length")
        name_len = data[pos]
        pos += 1
        _need(data, pos, name_len, f"{what} name")
        raw = data[pos : pos + name_len]
        if not _is_name(raw, MAX_NAME_LEN):
            raise AicFormatError(
                f"corrupt .aic file: {what} name {raw!r} is not 1..{MAX_NAME_LEN} printable ASCII chars"
            )
        name = raw.decode("ascii")
        what = f"metadata block {name!r}"
        name_start, pos = pos, pos + name_len
        size, pos = _read_varint(data, pos, what)
        _need(data, pos, size + _SECTION_CRC, what)
        start, end = pos, pos + size
        (stored_crc,) = _CRC.unpack_from(data, end)
        view = memoryview(data)
        if zlib.crc32(view[start:end], zlib.crc32(view[name_start : name_start + name_len])) != stored_crc:
            raise AicFormatError(f"corrupt .aic file: {what} CRC mismatch")
        if name in seen:
            raise AicFormatError(f"corrupt .aic file: duplicate metadata block {name!r}")
        seen.add(name)
        metadata.append((name, start, end))
        pos = end + _SECTION_CRC
    metadata_end = pos
    groups: list[tuple[int, int]] = []
    group_ends: list[int] = []
    for i in range(n_groups):
        what = f"group {i}"
        pos = _expect_kind(data, pos, KIND_GROUP, what, f"header declares {n_groups} groups")
        size, pos = _read_varint(data, pos, what)
        _need(data, pos, size + _SECTION_CRC, what)
        start, end = pos, pos + size
        (stored_crc,) = _CRC.unpack_from(data, end)
        if zlib.crc32(memoryview(data)[start:end]) != stored_crc:
            raise AicFormatError(f"corrupt .aic file: {what} CRC mismatch")
        groups.append((start, end))
        pos = end + _SECTION_CRC
        group_ends.append(pos)
    if pos != len(data):
        raise AicFormatError(f"corrupt .aic file: {len(data) - pos} trailing bytes after the last section")
    expected = _ratio(header, len(data))
    if not abs(header.achieved_ratio - expected) <= expected * _RATIO_TOLERANCE:
        raise AicFormatError(
            f"corrupt .aic file: header says ratio {header.achieved_ratio:.6g} but "
            f"{len(data)} bytes give {expected:.6g}"
        )
    return _Layout(header, metadata, groups, metadata_end, group_ends)


def unpack(data: bytes | bytearray | memoryview) -> AicFile:
    """Validate and decode a whole file; raises only :class:`AicFormatError` for bad bytes.

    Every length is checked against the bytes actually present before
    anything is sliced, so a hostile length cannot make the reader allocate.
    """
    data = _as_bytes(data)
    layout = _parse(data)
    return AicFile(
        header=layout.header,
        metadata={name: data[start:end] for name, start, end in layout.metadata},
        groups=[data[start:end] for start, end in layout.groups],
    )


def truncate_groups(data: bytes | bytearray | memoryview, keep: int, target_ratio: float) -> bytes:
    """Keep the first ``keep`` group sections: cut the file's tail and rewrite the header.

    The groups count, target ratio, achieved ratio and header CRC change;
    metadata and the kept group sections are copied byte for byte.  Raises
    :class:`AicFormatError` if ``data`` is not a valid file and ``ValueError``
    if ``keep`` or ``target_ratio`` is out of range.
    """
    if not isinstance(keep, int) or isinstance(keep, bool):
        raise TypeError(f"keep must be an int, got {type(keep).__name__}")
    data = _as_bytes(data)
    layout = _parse(data)
    if not 0 <= keep <= len(layout.groups):
        raise ValueError(f"cannot keep {keep} groups of a file that has {len(layout.groups)}")
    header = replace(layout.header, target_ratio=target_ratio)
    problem = _header_problem(header)
    if problem:
        raise ValueError(f"cannot write .aic: {problem}")
    end = layout.group_ends[keep - 1] if keep else layout.metadata_end
    head = _pack_header(header, _ratio(header, end), keep, len(layout.metadata))
    return head + data[HEADER_SIZE:end]


__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "LATENT_STRIDE",
    "MAGIC",
    "MAX_PIXELS",
    "SUPPORTED_VERSIONS",
    "AicFile",
    "AicFormatError",
    "AicHeader",
    "file_overhead",
    "group_section_overhead",
    "pack",
    "truncate_groups",
    "unpack",
]
