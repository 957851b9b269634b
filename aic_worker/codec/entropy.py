"""Context-adaptive entropy coding of the quantised latent, one payload per channel group.

Probabilities come only from integers, so any machine decodes the same symbols
(invariant 4). For symbol q[c, i, j] the coder looks at what is already known:

    activity  a = box3x3( Σ |q[c-4 .. c-1]| )            (the previous channels, here)
                + 2 · Σ |q[c] at the 4 neighbours|          (second pass only)
    bucket    k = bit_length(a), at most 15                  (versions 1 and 2)
    scale     i = clamp(base[c, pass] + (slope[group, pass] · k) >> 2, 0, 63)
    q ~ Laplace table row i  (``laplace_tables``)

Version 3 replaces the bucket by a fixed integer dot product of integer features, each
the bit length (at most 15) of an activity the decoder already knows:

    f = ( bit_length(a),  bit_length(|q[c-1]|) here,  bit_length(Σ_{c' < c} |q[c']|) here,
          bit_length(box3x3 of that),  bit_length(2 · Σ |q[c] at the 4 neighbours|) )
    k = clamp((w_pass · f + 4) >> 3, 0, 15)

The third feature, the energy of all earlier coefficients of the same block, tells a
textured block from a flat one far better than four channels can. The weights are
integers pinned below (``CONTEXT_WEIGHTS``), fitted once on training photos (never
Kodak) by a coordinate search on the exact code length, so invariant 4 holds.

Positions go in two passes, a checkerboard: anchors (i + j even) first, then
the rest, which see their four decoded neighbours. The encoder picks ``base``
(per channel and pass) and ``slope`` (per group and pass) to minimise the code length,
and sends them ahead of the symbols:

    version 1: payload = slope[2] | base[group_size · 2] (bytes) | range-coded words (u32 LE)
    version 2, 3: payload = range-coded words: slopes, predicted flags, base differences, symbols

Version 2 codes the side information (at 256x it was a seventh of the file) and lets
the encoder predict channels: a channel flagged as predicted is coded as its row
differences (``prediction``), and "q" above then means those differences, contexts included.

Within a channel and pass, symbols are coded grouped by scale row (ascending),
each group in raster order; the decoder recomputes the rows, so it knows the
order too. A group depends on earlier groups only, so trailing groups can be
dropped (truncation) and the rest still decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import constriction
import numpy as np

from aic_worker.codec import laplace_tables as tables
from aic_worker.codec import prediction
from aic_worker.codec.bitstream import FORMAT_VERSION
from aic_worker.codec.errors import AicFormatError
from aic_worker.codec.prediction import Symbols

PREVIOUS = 4                     # channels of context
ESCAPE_BITS = 16                 # |q| ≥ LIMIT: the table codes ±LIMIT, then |q| − LIMIT in 16 bits
MAX_SYMBOL = tables.LIMIT + (1 << ESCAPE_BITS) - 1
MAX_BUCKET = 15
TOP = 1 << (MAX_BUCKET - 1)      # activities from here on share the top bucket
SLOPES = np.arange(0, 16, 2)     # candidates the encoder tries
BASE_OFFSET = 128                # base byte b means base b - 128 (version 1)
SIDE_ROW = 25                    # table row coding the bases' differences (version 2)
CHUNK = 32                       # channels worked on at once: bounds big images' temporaries
# Version 3: weights of the features (bucket, previous channel, earlier channels, their 3x3
# box, the four neighbours) for the anchor pass and the second pass; k = (w·f + 4) >> 3.
CONTEXT_WEIGHTS = ((4, 4, 9, -1, 0), (4, 3, 7, -2, 3))
CONTEXT_SHIFT = 3


def _bordered(a: np.ndarray) -> np.ndarray:
    """``a`` with a border of one zero on each side of the last two axes."""
    p = np.zeros((*a.shape[:-2], a.shape[-2] + 2, a.shape[-1] + 2), dtype=a.dtype)
    p[..., 1:-1, 1:-1] = a
    return p


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 box sum over the last two axes, zero outside."""
    return _box3_bordered(_bordered(a))


def _neighbours4(a: np.ndarray) -> np.ndarray:
    p = _bordered(a)
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


@cache
def anchor_mask(h: int, w: int) -> np.ndarray:
    return (np.add.outer(np.arange(h), np.arange(w)) % 2) == 0


def buckets(prev_abs: np.ndarray, cur_abs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Context buckets (anchor pass, second pass) for channels given their context.

    ``prev_abs``: Σ|q| over each channel's previous channels; ``cur_abs``: |q| of
    the channels themselves (only their anchors are read). Shapes (..., h, w).
    """
    base = _box3(prev_abs)
    anchors = anchor_mask(*cur_abs.shape[-2:])
    second = base + 2 * _neighbours4(np.where(anchors, cur_abs, 0))
    return _bit_length(base), _bit_length(second)


def buckets_v3(
    prev_abs: np.ndarray, cur_abs: np.ndarray, before_abs: np.ndarray, earlier_abs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Version 3's context buckets (anchor pass, second pass) for channels given their context.

    ``prev_abs`` and ``cur_abs`` as for ``buckets``; ``before_abs``: |q| of each channel's
    previous channel; ``earlier_abs``: Σ|q| over all of each channel's earlier channels.
    """
    box = _box3(prev_abs)
    anchors = anchor_mask(*cur_abs.shape[-2:])
    near = 2 * _neighbours4(np.where(anchors, cur_abs, 0))
    shared = (_bit_length(before_abs), _bit_length(earlier_abs), _bit_length(_box3(earlier_abs)))
    return (
        _combine(CONTEXT_WEIGHTS[0], (_bit_length(box), *shared, None)),
        _combine(CONTEXT_WEIGHTS[1], (_bit_length(box + near), *shared, _bit_length(near))),
    )


def _combine(weights: tuple[int, ...], features: tuple[np.ndarray | None, ...]) -> np.ndarray:
    """clamp((weights · features + rounding) >> CONTEXT_SHIFT, 0, MAX_BUCKET) as int8, in integers."""
    acc = np.zeros(features[0].shape, dtype=np.int32)
    for weight, feature in zip(weights, features, strict=True):
        if weight:
            acc += weight * feature.astype(np.int32)
    acc += 1 << (CONTEXT_SHIFT - 1)
    acc >>= CONTEXT_SHIFT
    return np.clip(acc, 0, MAX_BUCKET).astype(np.int8)


def _bit_length(a: np.ndarray) -> np.ndarray:
    """min(bit_length(a), MAX_BUCKET) for integers a ≥ 0, as int8.

    Exact integer work: below 2^24 a float32 holds the integer exactly, and its exponent
    field is bit_length + 126 (zero for 0); no float rounding is involved.
    """
    f = np.minimum(a, TOP).astype(np.float32)
    exponent = f.view(np.int32) >> 23
    return np.maximum(exponent - 126, 0).astype(np.int8)


def _scale_rows(base: np.ndarray, slope: int | np.ndarray, k: np.ndarray) -> np.ndarray:
    return np.clip(base + ((slope * k.astype(np.int32)) >> 2), 0, tables.SCALES - 1)


def _previous_sums(absq: np.ndarray) -> np.ndarray:
    """For every channel c: Σ |q| over channels max(0, c-PREVIOUS) .. c-1."""
    out = np.zeros_like(absq)
    for shift in range(1, PREVIOUS + 1):
        out[shift:] += absq[:-shift]
    return out


@dataclass
class _Choice:
    """Per-channel bases and per-group slopes for one pass, with their code length."""

    base: np.ndarray    # (M,) int
    slope: np.ndarray   # (G,) int
    bits: np.ndarray    # (G,) float: ideal code length of the pass's symbols


BASES = np.arange(-64, 64)


def _choose(q: Symbols, k: np.ndarray, mask: np.ndarray, group: int, version: int) -> _Choice:
    """The (base, slope) of least code length for one pass of every channel.

    Exact and cheap: a histogram of (channel, bucket, |symbol|) times the table of
    code lengths (the tables are symmetric) gives each channel's cost of every
    (bucket, row) pair, from which every (base, slope) candidate is a small gather.
    Channels are histogrammed in tiers of their largest magnitude, so the many
    small high-frequency channels do not pay for the width of the few big ones.
    In version 2 the bases are coded too (``_chain``), and their cost counts.
    """
    m = q.shape[0]
    buckets_n = MAX_BUCKET + 1
    per_row = np.empty((m, buckets_n, tables.SCALES), dtype=np.float32)
    escape_bits = np.empty(m, dtype=np.int64)
    for c in range(0, m, CHUNK):        # a chunk of channels at a time: bounded temporaries
        part = slice(c, c + CHUNK)
        per_row[part], escape_bits[part] = _row_costs(q.channels(c, c + CHUNK), k[part], mask)
    # row(base, k) = clip(base + (slope·k >> 2)): pad the row axis with its edge rows, and
    # each bucket's cost over all bases becomes one contiguous slice.
    offsets = (SLOPES[:, None] * np.arange(buckets_n)[None, :]) >> 2           # (S, K)
    lo = -int(BASES[0])
    padded = np.empty((m, buckets_n, len(BASES) + int(offsets.max())), dtype=np.float32)
    padded[:, :, :lo] = per_row[:, :, :1]
    padded[:, :, lo : lo + tables.SCALES] = per_row
    padded[:, :, lo + tables.SCALES :] = per_row[:, :, -1:]
    best_bits = np.empty((len(SLOPES), m))
    best_base = np.empty((len(SLOPES), m), dtype=np.int64)
    for si in range(len(SLOPES)):
        cost = np.zeros((m, len(BASES)), dtype=np.float32)
        for k, off in enumerate(offsets[si]):
            cost += padded[:, k, off : off + len(BASES)]
        if version >= 2:
            pick, bits = _chain(cost.reshape(m // group, group, len(BASES)))
        else:
            pick = cost.argmin(axis=1)
            bits = cost[np.arange(m), pick]
        best_bits[si] = bits + escape_bits
        best_base[si] = BASES[pick]
    per_group = best_bits.reshape(len(SLOPES), m // group, group).sum(axis=2)   # (S, G)
    pick = per_group.argmin(axis=0)
    base = best_base[np.repeat(pick, group), np.arange(m)]
    return _Choice(base, SLOPES[pick], per_group[pick, np.arange(m // group)])


def _row_costs(q: np.ndarray, k: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's code length under every (bucket, row) pair, and its escape bits."""
    buckets_n = MAX_BUCKET + 1
    mag = q[:, mask].astype(np.int32, copy=False)          # a fresh copy: worked on in place
    np.abs(mag, out=mag)
    np.minimum(mag, tables.LIMIT, out=mag)
    kp = k[:, mask]
    escape_bits = ESCAPE_BITS * (mag == tables.LIMIT).sum(axis=1)
    tier = np.frexp(mag.max(axis=1, initial=0))[1]          # bit length of each channel's peak
    per_row = np.empty((q.shape[0], buckets_n, tables.SCALES), dtype=np.float32)
    for t in np.unique(tier):
        chans = np.flatnonzero(tier == t)
        width = 1 << int(t)
        idx = (np.arange(len(chans), dtype=np.int32)[:, None] * buckets_n + kp[chans]) * width + mag[chans]
        hist = np.bincount(idx.ravel(), minlength=len(chans) * buckets_n * width).reshape(-1, width)
        code_len = _code_lengths(width)
        per_row[chans] = (hist.astype(np.float32) @ code_len).reshape(len(chans), buckets_n, tables.SCALES)
    return per_row, escape_bits


def _chain(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bases for (G, group, bases) costs when each base is coded as the difference from the
    previous channel's (the first from 0): greedily, channel by channel, the base of least
    symbol bits plus difference bits. Returns base indices and those bits, both (G·group,)."""
    n_groups, group, n_bases = cost.shape
    diff_bits = _base_diff_bits()
    prev = np.full(n_groups, -int(BASES[0]))                 # the index of base 0
    picks = np.empty((n_groups, group), dtype=np.int64)
    bits = np.empty((n_groups, group), dtype=np.float32)
    rows = np.arange(n_groups)
    for j in range(group):
        total = cost[:, j, :] + diff_bits[np.arange(n_bases)[None, :] - prev[:, None] + n_bases - 1]
        prev = picks[:, j] = total.argmin(axis=1)
        bits[:, j] = total[rows, prev]
    return picks.ravel(), bits.ravel()


@cache
def _base_diff_bits() -> np.ndarray:
    """Bits of each base difference −127 … 127 under the side-information row."""
    span = len(BASES) - 1
    return tables.bits()[SIDE_ROW, tables.LIMIT - span : tables.LIMIT + span + 1].astype(np.float32)


@cache
def _code_lengths(width: int) -> np.ndarray:
    """(width, SCALES) float32: bits of |symbol| 0 .. width-1 under each row."""
    return np.ascontiguousarray(tables.bits()[:, tables.LIMIT : tables.LIMIT + width].T, dtype=np.float32)


def estimate_bits(q: np.ndarray, group: int, version: int = FORMAT_VERSION) -> np.ndarray:
    """Payload bits of each group as ``encode`` writes it, side information included
    (rate control's fast path)."""
    return analyse(q, group, version).bits


def analyse(q: np.ndarray, group: int, version: int = FORMAT_VERSION) -> Analysis:
    """What ``encode`` decides for ``q`` before it codes a symbol: contexts, rows, bits."""
    symbols = _symbols(q, version)
    return _analyse(symbols, group, version)


@dataclass
class Analysis:
    """Context buckets of both passes, the encoder's choices for them and the predicted flags."""

    k_a: np.ndarray
    k_b: np.ndarray
    first: _Choice
    second: _Choice
    bits: np.ndarray        # (G,) payload bits, side information included
    predicted: np.ndarray   # (M,) bool: channels coded as row differences (``prediction``)

    def rows(self, channels: np.ndarray, positions: np.ndarray, group: int) -> np.ndarray:
        """The table row ``encode`` codes each symbol with, for symbols at ``channels`` and
        flat ``positions`` (i·w + j), either pass."""
        anchor = anchor_mask(*self.k_a.shape[1:]).ravel()[positions]
        k = np.where(anchor, self.k_a.reshape(len(self.k_a), -1)[channels, positions],
                     self.k_b.reshape(len(self.k_b), -1)[channels, positions])
        base = np.where(anchor, self.first.base[channels], self.second.base[channels]).astype(np.int32)
        slope = np.where(anchor, self.first.slope[channels // group], self.second.slope[channels // group])
        return _scale_rows(base, slope.astype(np.int32), k)


def _symbols(q: np.ndarray, version: int) -> Symbols:
    """What a file of ``version`` codes for ``q``: version 2 predicts the channels it pays to."""
    if version >= 2:
        return Symbols(q, prediction.choose(q, MAX_SYMBOL))
    return Symbols(q, np.zeros(q.shape[0], dtype=bool))


def _side_bits(q: Symbols, group: int, version: int) -> np.ndarray:
    """(G,) bits of each group's side information other than its bases (those are in ``_chain``'s
    bits in version 2): the slopes and bases as bytes in version 1; in version 2 the coded slopes
    and predicted flags."""
    n_groups = q.shape[0] // group
    if version < 2:
        return np.full(n_groups, 8.0 * (2 + 2 * group))
    flags = q.predicted.reshape(n_groups, group)
    return 2 * np.log2(len(SLOPES)) + _flag_bits()[_flag_contexts(flags), flags.astype(np.int64)].sum(axis=1)


def _analyse(q: Symbols, group: int, version: int) -> Analysis:
    k_a, k_b = np.empty(q.shape, dtype=np.int8), np.empty(q.shape, dtype=np.int8)
    earlier = np.zeros(q.shape[1:], dtype=np.int32)      # Σ|q| of the channels before the chunk (< 2^26)
    for c in range(0, q.shape[0], CHUNK):
        lo = max(0, c - PREVIOUS)                        # the chunk and its context channels
        absq = np.abs(q.channels(lo, c + CHUNK)).astype(np.int32, copy=False)
        prev, cur = _previous_sums(absq)[c - lo :], absq[c - lo :]
        if version >= 3:
            before = absq[c - lo - 1 : -1] if c else np.concatenate([np.zeros_like(cur[:1]), cur[:-1]])
            sums = earlier + np.cumsum(cur, axis=0, dtype=np.int32)
            earlier_abs = sums - cur
            earlier = sums[-1]
            k_a[c : c + CHUNK], k_b[c : c + CHUNK] = buckets_v3(prev, cur, before, earlier_abs)
        else:
            k_a[c : c + CHUNK], k_b[c : c + CHUNK] = buckets(prev, cur)
    anchors = anchor_mask(*q.shape[1:])
    first = _choose(q, k_a, anchors, group, version)
    second = _choose(q, k_b, ~anchors, group, version)
    bits = first.bits + second.bits + _side_bits(q, group, version)
    return Analysis(k_a, k_b, first, second, bits, q.predicted)


@cache
def _model(row: int) -> constriction.stream.model.Categorical:
    return constriction.stream.model.Categorical(tables.frequencies()[row].astype(np.float64), perfect=False)


_ESCAPE = constriction.stream.model.Uniform(1 << ESCAPE_BITS)


def _box3_bordered(a: np.ndarray) -> np.ndarray:
    """3x3 box sums of the inside of zero-bordered (..., h + 2, w + 2) arrays: (..., h, w)."""
    rows = a[..., :-2, :] + a[..., 1:-1, :] + a[..., 2:, :]
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]


def _encode_passes(coder, passes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Encode passes one after the other, each given as (its symbols, their scale rows).

    In a pass the symbols go grouped by row, ascending; each row's symbols (in raster
    order) as one batch, followed by the escape values of those at ±LIMIT (in the batch's
    order), so the decoder knows how many to read. One stable sort by (pass, row) gives
    every batch of all the passes as one slice (a group's sixteen passes at once: a sort
    per pass cost more than the coding).
    """
    lim = tables.LIMIT
    keys = np.concatenate([rows.astype(np.int64) + i * tables.SCALES for i, (_, rows) in enumerate(passes)])
    order = np.argsort(keys, kind="stable")
    values = np.concatenate([v for v, _ in passes])[order]
    escapes = values.size and int(np.abs(values).max()) >= lim   # rare: checked once
    symbols = (np.clip(values, -lim, lim) if escapes else values).astype(np.int32) + lim
    counts = np.bincount(keys, minlength=len(passes) * tables.SCALES)
    ends = np.cumsum(counts).tolist()
    for key in np.flatnonzero(counts).tolist():
        start, end = ends[key] - int(counts[key]), ends[key]
        coder.encode(symbols[start:end], _model(key % tables.SCALES))
        if escapes:
            chunk = values[start:end]
            extra = np.abs(chunk[np.abs(chunk) >= lim]) - lim
            if extra.size:
                coder.encode(extra.astype(np.int32), _ESCAPE)


def _decode_pass(coder, rows: np.ndarray) -> np.ndarray:
    """Decode the symbols of one pass, written by ``_encode_passes``, given their scale rows."""
    lim = tables.LIMIT
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=tables.SCALES)
    ends = np.cumsum(counts)
    decoded = np.empty(rows.shape, dtype=np.int64)
    for row in np.flatnonzero(counts):
        values = coder.decode(_model(int(row)), int(counts[row])).astype(np.int64) - lim
        esc = np.abs(values) == lim
        if esc.any():
            values[esc] = np.sign(values[esc]) * (lim + coder.decode(_ESCAPE, int(esc.sum())))
        decoded[ends[row] - counts[row] : ends[row]] = values
    out = np.empty_like(decoded)
    out[order] = decoded
    return out


def encode(q: np.ndarray, group: int, version: int = FORMAT_VERSION) -> list[bytes]:
    """Encode the whole (M, h, w) latent; one payload per channel group, laid out as ``version``."""
    q = np.asarray(q)
    if q.dtype != np.int32:                 # clip before narrowing: nothing may wrap
        q = np.clip(q, -MAX_SYMBOL, MAX_SYMBOL).astype(np.int32)
    elif q.size and (q.min() < -MAX_SYMBOL or q.max() > MAX_SYMBOL):
        q = np.clip(q, -MAX_SYMBOL, MAX_SYMBOL)   # (``quantise``'s output passes uncopied)
    symbols = _symbols(q, version)
    analysis = _analyse(symbols, group, version)
    first, second, k_a, k_b = analysis.first, analysis.second, analysis.k_a, analysis.k_b
    anchors = anchor_mask(*q.shape[1:])
    payloads = []
    for g in range(q.shape[0] // group):
        chans = range(g * group, (g + 1) * group)
        enc = constriction.stream.queue.RangeEncoder()
        if version >= 2:
            side = b""
            _encode_side(enc, first, second, symbols.predicted[chans.start : chans.stop], g)
        else:
            side = bytes([int(first.slope[g]), int(second.slope[g])]) + bytes(
                int(choice.base[c]) + BASE_OFFSET for c in chans for choice in (first, second)
            )
        s = symbols.channels(chans.start, chans.stop)          # the group's channels at once
        rows_a = _scale_rows(first.base[chans, None], first.slope[g], k_a[chans][:, anchors])
        rows_b = _scale_rows(second.base[chans, None], second.slope[g], k_b[chans][:, ~anchors])
        values_a, values_b = s[:, anchors], s[:, ~anchors]
        _encode_passes(enc, [pair for j in range(group)
                             for pair in ((values_a[j], rows_a[j]), (values_b[j], rows_b[j]))])
        payloads.append(side + enc.get_compressed().astype("<u4").tobytes())
    return payloads


# Version 2 side information, range coded ahead of the group's symbols: each pass's slope
# (uniform over SLOPES), each channel's predicted flag (given the previous channel's flag in
# the group; even odds for the first) and each pass's bases (differences, row SIDE_ROW).
_SLOPE = constriction.stream.model.Uniform(len(SLOPES))
_FLAG_FREQUENCIES = ((1.0, 1.0), (15.0, 1.0), (1.0, 15.0))   # first channel; after 0; after 1


@cache
def _flag_model(context: int) -> constriction.stream.model.Categorical:
    return constriction.stream.model.Categorical(np.array(_FLAG_FREQUENCIES[context]), perfect=False)


def _flag_context(previous: int | None) -> int:
    """A flag's context: 0 for a group's first channel, else 1 + the previous channel's flag."""
    return 0 if previous is None else 1 + previous


def _flag_contexts(flags: np.ndarray) -> np.ndarray:
    """``_flag_context`` of every flag of (..., group) flags at once."""
    first = np.zeros((*flags.shape[:-1], 1), dtype=np.int64)
    return np.concatenate([first, 1 + flags[..., :-1].astype(np.int64)], axis=-1)


@cache
def _flag_bits() -> np.ndarray:
    """(context, flag) → bits, as ``_flag_model`` codes them."""
    freq = np.array(_FLAG_FREQUENCIES)
    return -np.log2(freq / freq.sum(axis=1, keepdims=True))


def _encode_side(enc, first: _Choice, second: _Choice, flags: np.ndarray, g: int) -> None:
    for choice in (first, second):
        enc.encode(int(np.flatnonzero(choice.slope[g] == SLOPES)[0]), _SLOPE)
    for flag, context in zip(flags, _flag_contexts(flags), strict=True):
        enc.encode(int(flag), _flag_model(int(context)))
    group = len(flags)
    for choice in (first, second):
        diffs = np.diff(choice.base[g * group : (g + 1) * group], prepend=0)
        enc.encode((diffs + tables.LIMIT).astype(np.int32), _model(SIDE_ROW))


def _decode_side(dec, group: int, g: int) -> tuple[list[int], np.ndarray, list[np.ndarray]]:
    """A version-2 group's (slopes, predicted flags, bases of each pass)."""
    slopes = [int(SLOPES[dec.decode(_SLOPE)]) for _ in range(2)]
    flags = np.zeros(group, dtype=bool)
    for j in range(group):
        flags[j] = dec.decode(_flag_model(_flag_context(int(flags[j - 1]) if j else None))) == 1
    bases = []
    for _ in range(2):
        pass_bases = np.cumsum(dec.decode(_model(SIDE_ROW), group).astype(np.int64) - tables.LIMIT)
        if pass_bases.min() < BASES[0] or pass_bases.max() > BASES[-1]:
            raise AicFormatError(f"group {g} has a context base outside {BASES[0]} … {BASES[-1]}")
        bases.append(pass_bases)
    return slopes, flags, bases


def decode(payloads: list[bytes], channels: int, group: int, h: int, w: int, *, version: int) -> np.ndarray:
    """Decode the groups present, laid out as ``version``; channels of missing (dropped) groups are zero.

    Bad payloads raise only ``AicFormatError`` (constriction reports words that no valid
    encoder could have written with an AssertionError, which must not escape as a crash).
    """
    try:
        return _decode(payloads, channels, group, h, w, version)
    except (AssertionError, ValueError, RuntimeError, OverflowError) as exc:
        raise AicFormatError(f"latent data cannot be decoded: {type(exc).__name__}: {exc}") from exc


def _decode(payloads: list[bytes], channels: int, group: int, h: int, w: int, version: int) -> np.ndarray:
    """``decode`` without the translation of coder errors.

    Computes the same buckets as ``buckets``, channel by channel, on zero-bordered
    buffers of |q| so that no per-channel padding or full-array pass is needed. The
    buffers hold min(|q|, 2^14) as int16: any larger term already puts its sums in the
    top bucket, so the buckets are unchanged and the buffer is half the size.
    """
    q = np.zeros((channels, h, w), dtype=np.int32)
    absq = np.zeros((channels + PREVIOUS, h + 2, w + 2), dtype=np.int16)   # channel c at c + PREVIOUS
    earlier = np.zeros((h + 2, w + 2), dtype=np.int32)   # version 3: Σ|q| of the channels decoded
    anchors = anchor_mask(h, w)
    others = ~anchors
    head = 0 if version >= 2 else 2 + 2 * group        # bytes ahead of the coded words
    predicted = np.zeros(group, dtype=bool)
    for g, payload in enumerate(payloads):
        if len(payload) < head or (len(payload) - head) % 4:
            raise AicFormatError(f"group {g} payload has an invalid length ({len(payload)} bytes)")
        words = np.frombuffer(payload[head:], dtype="<u4").astype(np.uint32)
        dec = constriction.stream.queue.RangeDecoder(words)
        if version >= 2:
            slopes, predicted, bases = _decode_side(dec, group, g)
        else:
            slopes = [payload[0], payload[1]]
            if max(slopes) > 63:
                raise AicFormatError(f"group {g} has an invalid context slope")
            raw = np.frombuffer(payload[2:head], dtype=np.uint8).astype(np.int64) - BASE_OFFSET
            bases = [raw[0::2], raw[1::2]]
        for j in range(group):
            c = g * group + j
            base_a, base_b = int(bases[0][j]), int(bases[1][j])
            context = _box3_bordered(absq[c : c + PREVIOUS].sum(axis=0))
            if version >= 3:
                shared = (_bit_length(absq[c + PREVIOUS - 1, 1:-1, 1:-1]), _bit_length(earlier[1:-1, 1:-1]),
                          _bit_length(_box3_bordered(earlier)))
                k = _combine(CONTEXT_WEIGHTS[0], (_bit_length(context), *shared, None))[anchors]
            else:
                k = _bit_length(context[anchors])
            first = _decode_pass(dec, _scale_rows(base_a, slopes[0], k))
            cur = absq[c + PREVIOUS]
            inner = cur[1:-1, 1:-1]
            inner[anchors] = np.minimum(np.abs(first), TOP)
            wide = cur.astype(np.int32)
            near = 2 * (wide[:-2, 1:-1] + wide[2:, 1:-1] + wide[1:-1, :-2] + wide[1:-1, 2:])
            if version >= 3:
                features = (_bit_length(context + near), *shared, _bit_length(near))
                k = _combine(CONTEXT_WEIGHTS[1], features)[others]
            else:
                k = _bit_length((context + near)[others])
            second = _decode_pass(dec, _scale_rows(base_b, slopes[1], k))
            inner[others] = np.minimum(np.abs(second), TOP)
            earlier += cur
            q[c][anchors] = first
            q[c][others] = second
            if predicted[j]:
                q[c] = prediction.restore(q[c])
    return q
