"""Context-adaptive entropy coding of the quantised latent, one payload per channel group.

Probabilities come only from integers, so any machine decodes the same symbols
(invariant 4). For symbol q[c, i, j] the coder looks at what is already known:

    activity  a = box3x3( Σ |q[c-4 .. c-1]| )            (the previous channels, here)
                + 2 · Σ |q[c] at the 4 neighbours|          (second pass only)
    bucket    k = bit_length(a), at most 15
    scale     i = clamp(base[c, pass] + (slope[group, pass] · k) >> 2, 0, 63)
    q ~ Laplace table row i  (``laplace_tables``)

Positions go in two passes, a checkerboard: anchors (i + j even) first, then
the rest, which see their four decoded neighbours. The encoder picks ``base``
(one byte per channel and pass) and ``slope`` (one byte per group and pass) to
minimise the exact code length, and sends them at the head of the payload:

    payload = slope[2] | base[group_size · 2] | range-coded words (u32 LE)

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
from aic_worker.codec.errors import AicFormatError

PREVIOUS = 4                     # channels of context
ESCAPE_BITS = 16                 # |q| ≥ LIMIT: the table codes ±LIMIT, then |q| − LIMIT in 16 bits
MAX_SYMBOL = tables.LIMIT + (1 << ESCAPE_BITS) - 1
MAX_BUCKET = 15
SLOPES = np.arange(0, 16, 2)     # candidates the encoder tries
BASE_OFFSET = 128                # base byte b means base b - 128
_THRESHOLDS = 1 << np.arange(MAX_BUCKET)


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 box sum over the last two axes, zero outside."""
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)])
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]


def _neighbours4(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)])
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
    return (np.searchsorted(_THRESHOLDS, base, side="right"),
            np.searchsorted(_THRESHOLDS, second, side="right"))


def _scale_rows(base: np.ndarray, slope: int | np.ndarray, k: np.ndarray) -> np.ndarray:
    return np.clip(base + ((slope * k) >> 2), 0, tables.SCALES - 1)


def _previous_sums(absq: np.ndarray) -> np.ndarray:
    """For every channel c: Σ |q| over channels max(0, c-PREVIOUS) .. c-1."""
    cs = np.concatenate([np.zeros_like(absq[:1]), np.cumsum(absq, axis=0)])
    idx = np.arange(absq.shape[0])
    return cs[idx] - cs[np.maximum(idx - PREVIOUS, 0)]


@dataclass
class _Choice:
    """Per-channel bases and per-group slopes for one pass, with their code length."""

    base: np.ndarray    # (M,) int
    slope: np.ndarray   # (G,) int
    bits: np.ndarray    # (G,) float: ideal code length of the pass's symbols


BASES = np.arange(-64, 64)


def _choose(q: np.ndarray, k: np.ndarray, mask: np.ndarray, group: int) -> _Choice:
    """The (base, slope) of least code length for one pass of every channel.

    Exact and cheap: a histogram of (channel, bucket, symbol) times the table of
    code lengths gives each channel's cost of every (bucket, row) pair, from
    which every (base, slope) candidate is a small gather.
    """
    m = q.shape[0]
    buckets_n = MAX_BUCKET + 1
    sym = np.clip(q[:, mask], -tables.LIMIT, tables.LIMIT)
    escape_bits = ESCAPE_BITS * (np.abs(sym) == tables.LIMIT).sum(axis=1)
    lim = int(np.abs(sym).max(initial=0))
    width = 2 * lim + 1
    idx = (np.arange(m)[:, None] * buckets_n + k[:, mask]) * width + (sym + lim)
    hist = np.bincount(idx.ravel(), minlength=m * buckets_n * width).reshape(m * buckets_n, width)
    code_len = tables.bits()[:, tables.LIMIT - lim : tables.LIMIT + lim + 1]
    per_row = (hist @ code_len.T).reshape(m, buckets_n, tables.SCALES)       # (M, K, rows)
    kk = np.arange(buckets_n)
    best_bits = np.empty((len(SLOPES), m))
    best_base = np.empty((len(SLOPES), m), dtype=np.int64)
    for si, slope in enumerate(SLOPES):
        rows = _scale_rows(BASES[:, None], slope, kk[None, :])               # (B, K)
        cost = per_row[:, kk[None, :], rows].sum(axis=2)                      # (M, B)
        pick = cost.argmin(axis=1)
        best_bits[si] = cost[np.arange(m), pick] + escape_bits
        best_base[si] = BASES[pick]
    per_group = best_bits.reshape(len(SLOPES), m // group, group).sum(axis=2)   # (S, G)
    pick = per_group.argmin(axis=0)
    base = best_base[np.repeat(pick, group), np.arange(m)]
    return _Choice(base, SLOPES[pick], per_group[pick, np.arange(m // group)])


def estimate_bits(q: np.ndarray, group: int) -> np.ndarray:
    """Payload bits of each group, side information included (rate control's fast path)."""
    return _analyse(q, group).bits


@dataclass
class _Analysis:
    """Context buckets of both passes and the encoder's choices for them."""

    k_a: np.ndarray
    k_b: np.ndarray
    first: _Choice
    second: _Choice
    bits: np.ndarray    # (G,) payload bits, side information included


def _analyse(q: np.ndarray, group: int) -> _Analysis:
    absq = np.abs(q)
    k_a, k_b = buckets(_previous_sums(absq), absq)
    anchors = anchor_mask(*q.shape[1:])
    first = _choose(q, k_a, anchors, group)
    second = _choose(q, k_b, ~anchors, group)
    side_bits = 8 * (2 + 2 * group)
    return _Analysis(k_a, k_b, first, second, first.bits + second.bits + side_bits)


@cache
def _model(row: int) -> constriction.stream.model.Categorical:
    return constriction.stream.model.Categorical(tables.frequencies()[row].astype(np.float64), perfect=False)


_ESCAPE = constriction.stream.model.Uniform(1 << ESCAPE_BITS)


def _code_pass(coder, q_pass: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    """Encode (q_pass given) or decode the symbols of one pass, grouped by scale row.

    Each row's symbols go as one batch, followed by the escape values of those
    at ±LIMIT (in the batch's order), so the decoder knows how many to read.
    """
    lim = tables.LIMIT
    out = None if q_pass is not None else np.zeros(rows.shape, dtype=np.int64)
    for row in np.unique(rows):
        sel = rows == row
        if q_pass is not None:
            values = q_pass[sel]
            coder.encode((np.clip(values, -lim, lim) + lim).astype(np.int32), _model(int(row)))
            extra = np.abs(values[np.abs(values) >= lim]) - lim
            if extra.size:
                coder.encode(extra.astype(np.int32), _ESCAPE)
        else:
            values = coder.decode(_model(int(row)), int(sel.sum())).astype(np.int64) - lim
            esc = np.abs(values) == lim
            if esc.any():
                values[esc] = np.sign(values[esc]) * (lim + coder.decode(_ESCAPE, int(esc.sum())))
            out[sel] = values
    return out


def encode(q: np.ndarray, group: int) -> list[bytes]:
    """Encode the whole (M, h, w) latent; one payload per channel group."""
    q = np.clip(q, -MAX_SYMBOL, MAX_SYMBOL).astype(np.int64)
    analysis = _analyse(q, group)
    first, second, k_a, k_b = analysis.first, analysis.second, analysis.k_a, analysis.k_b
    anchors = anchor_mask(*q.shape[1:])
    payloads = []
    for g in range(q.shape[0] // group):
        chans = range(g * group, (g + 1) * group)
        side = bytearray([int(first.slope[g]), int(second.slope[g])])
        for c in chans:
            side += bytes([int(first.base[c]) + BASE_OFFSET, int(second.base[c]) + BASE_OFFSET])
        enc = constriction.stream.queue.RangeEncoder()
        for c in chans:
            _code_pass(enc, q[c][anchors], _scale_rows(first.base[c], first.slope[g], k_a[c][anchors]))
            _code_pass(enc, q[c][~anchors], _scale_rows(second.base[c], second.slope[g], k_b[c][~anchors]))
        payloads.append(bytes(side) + enc.get_compressed().astype("<u4").tobytes())
    return payloads


def decode(payloads: list[bytes], channels: int, group: int, h: int, w: int) -> np.ndarray:
    """Decode the groups present; channels of missing (dropped) groups are zero."""
    q = np.zeros((channels, h, w), dtype=np.int64)
    anchors = anchor_mask(h, w)
    head = 2 + 2 * group
    for g, payload in enumerate(payloads):
        if len(payload) < head or (len(payload) - head) % 4:
            raise AicFormatError(f"group {g} payload has an invalid length ({len(payload)} bytes)")
        slopes = payload[0], payload[1]
        if max(slopes) > 63:
            raise AicFormatError(f"group {g} has an invalid context slope")
        words = np.frombuffer(payload[head:], dtype="<u4").astype(np.uint32)
        dec = constriction.stream.queue.RangeDecoder(words)
        for j in range(group):
            c = g * group + j
            base_a = payload[2 + 2 * j] - BASE_OFFSET
            base_b = payload[3 + 2 * j] - BASE_OFFSET
            prev = np.abs(q[max(0, c - PREVIOUS):c]).sum(axis=0)
            k_a, _ = buckets(prev, np.zeros((h, w), dtype=np.int64))
            q[c][anchors] = _code_pass(dec, None, _scale_rows(base_a, slopes[0], k_a[anchors]))
            _, k_b = buckets(prev, np.abs(q[c]))
            q[c][~anchors] = _code_pass(dec, None, _scale_rows(base_b, slopes[1], k_b[~anchors]))
    return q
