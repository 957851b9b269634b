"""Rate–distortion optimised quantisation: each symbol rounded by its own code length.

The plain quantiser (``rate_control.quantise``) rounds every |y/Δ| the same way, with a
fixed dead zone. But a symbol's price depends on its context: where the decoded
neighbours are quiet, the coder's row makes a zero cheap and a one dear; in a busy
texture the two cost almost the same. So for each symbol the encoder weighs the two
magnitudes around |y/Δ|, lo = ⌊|y/Δ|⌋ and lo + 1, by

    (|y/Δ| − m)² + price_k · LAMBDA · bits(row, m)

under the table row the coder will use for it (from the plain symbols' contexts and the
encoder's base and slope choice), and keeps the cheaper. The decoder is unchanged: it
reads symbols, however they were chosen, so every file stays a valid file of its version.

LAMBDA is in units of the step squared. The high-rate theory's slope, ln 2 / 6 ≈ 0.12,
ignores that a smaller symbol also quietens its neighbours' contexts; measured on
training photos (never Kodak; docs/model.md, *Rate–distortion optimised quantisation*),
0.04 gave the lowest BD-rate in PSNR and MS-SSIM alike.

Channels the coder predicts (row differences, ``prediction``: the block means and slow
gradients, at coarse steps most of the non-zero symbols) price a value by the two
differences it enters, with its left neighbour as already chosen and its right one as the
plain quantiser has it, and are decided left to right along each row.

``prices``: a channel's bits may be dearer than LAMBDA. The codec makes them dearer in the
channels that carry mostly colour (``chroma_prices``): the eye, luma measures and the classic
codecs weigh the luma most, and on training photos the bytes a little colour detail frees
gave more luma quality and RGB PSNR, for a little RGB MS-SSIM (docs/model.md, *Colour and
luma*).
"""

from __future__ import annotations

import numpy as np

from aic_worker.codec import entropy, prediction
from aic_worker.codec import laplace_tables as tables
from aic_worker.codec.colour import LUMA

LAMBDA = 0.04
CHROMA_PRICE = 1.5               # bits cost up to (1 + CHROMA_PRICE)·LAMBDA (luma share 0)
CHUNK_SYMBOLS = 1 << 21  # symbols weighed at once (at least a channel): bounds big images' temporaries
ROWS_SYMBOLS = 1 << 20   # predicted symbols decided at once (about 80 bytes of temporaries each)
REMEASURE = 0.01         # a change of the predicted groups' bits past this share is measured


def chroma_prices(rows: np.ndarray, price: float = CHROMA_PRICE) -> np.ndarray:
    """(M,) float32 multipliers of LAMBDA for the synthesis block rows ``rows`` (M, 3, h, w):
    1 + price·(1 − min(1, s_k)), s_k the row's luma share 3‖Y·b_k‖² / ‖b_k‖² (1 for a grey
    row, near 0 for a row of pure colour contrast)."""
    rows = np.asarray(rows, dtype=np.float64)
    luma = np.einsum("mcij,c->mij", rows, np.array(LUMA))
    share = 3 * np.square(luma).sum(axis=(1, 2)) / np.maximum(np.square(rows).sum(axis=(1, 2, 3)), 1e-30)
    return (1 + price * (1 - np.minimum(1.0, share))).astype(np.float32)


def refine(
    y: np.ndarray, q: np.ndarray, step: float, group: int, version: int, prices: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The symbols of ``y`` at ``step`` chosen by rate and distortion, from the plain symbols
    ``q`` (their groups; overwritten, so that a big image's symbols are not copied), and each
    group's estimated payload bits as ``entropy.encode`` would write them.

    The estimate is exact for the leading groups that hold predicted channels (measured
    again); for the rest it is the plain symbols' exact ideal length plus what each changed
    symbol changes under its row, leaving out that the coder re-chooses bases and slopes for
    the new symbols and that their neighbours' contexts shift. Rate control ends with an
    exact encode, so a miss costs time or fill, never the budget.
    Trailing groups left all zero are dropped, as ``rate_control.quantise`` does.
    ``prices``: (M,) multipliers of LAMBDA per channel (``chroma_prices``); None: LAMBDA everywhere.
    """
    m = q.shape[0]
    if not m:
        return q, np.zeros(0)
    if prices is not None and len(prices) < m:
        raise ValueError(f"{len(prices)} channel prices for {m} channels")
    # float64, as the costs it weighs are: a float32 λ would move decisions that sit on a tie
    lam = np.full(m, LAMBDA) if prices is None else LAMBDA * prices[:m].astype(np.float64)
    q = np.ascontiguousarray(q)                                  # (so that its views write through)
    analysis = entropy.analyse(q, group, version)
    change = np.zeros(m)
    at_once = max(1, CHUNK_SYMBOLS // (q.shape[1] * q.shape[2]))
    for c in range(0, m, at_once):
        part = slice(c, min(c + at_once, m))
        u = np.abs(y[part]) / np.float32(step)
        u[analysis.predicted[part]] = 0                            # ``_refine_rows`` decides them
        # At most half a step stays zero, as the plain quantiser has it: under every row a
        # zero costs no more than a one. Only the rest is weighed.
        hot = np.flatnonzero(u > 0.5)
        channel, position = np.divmod(hot, u.shape[1] * u.shape[2])
        channel += c
        u = u.ravel()[hot]
        lo = np.floor(u)
        rows = analysis.rows(channel, position, group)
        cost_lo, cost_hi = _bits(rows, lo), _bits(rows, lo + 1)
        price = lam[channel]
        up = np.square(lo + 1 - u) + price * cost_hi < np.square(u - lo) + price * cost_lo
        chosen = q[part].reshape(-1)                             # a view: written in place
        was_up = np.abs(chosen[hot]) > lo                         # the plain quantiser's lo or lo + 1
        change[part] = np.bincount(
            channel - c, np.where(up, cost_hi, cost_lo) - np.where(was_up, cost_hi, cost_lo), part.stop - c
        )
        magnitude = np.minimum(lo + up, entropy.MAX_SYMBOL)
        chosen[hot] = np.copysign(magnitude, y[part].reshape(-1)[hot]).astype(np.int32)
    predicted = np.flatnonzero(analysis.predicted)
    at_once = max(1, ROWS_SYMBOLS // (q.shape[1] * q.shape[2]))
    for c in range(0, len(predicted), at_once):
        chans = predicted[c : c + at_once]
        q[chans], change[chans] = _refine_rows(y[chans], q[chans], step, analysis, chans, group, lam[chans])
    estimate = analysis.bits + change.reshape(-1, group).sum(axis=1)
    if predicted.size:
        # A predicted value enters two differences and its neighbours' contexts: where that
        # changed the leading groups' bits by more than REMEASURE (coarse steps, where these
        # channels hold most symbols: up to 4 % off otherwise), they are measured again. Later
        # groups' bits depend only on earlier channels, so this is their exact estimate.
        lead = int(predicted[-1]) // group + 1
        if abs(change[: lead * group].sum()) > REMEASURE * analysis.bits[:lead].sum():
            estimate[:lead] = entropy.estimate_bits(q[: lead * group], group, version)
    kept = np.flatnonzero(q.reshape(m // group, -1).any(axis=1))
    keep = int(kept[-1]) + 1 if kept.size else 0
    return q[: keep * group], estimate[:keep]


def _bits(rows: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """Bits of each symbol (any sign) under its row, as ``entropy.encode`` codes it: the table
    codes at most ±LIMIT, and a symbol from there on adds ESCAPE_BITS."""
    lim = tables.LIMIT
    magnitude = np.abs(symbols)
    at = np.minimum(magnitude, lim).astype(np.int32)
    return tables.bits()[rows, at + lim].astype(np.float32) + entropy.ESCAPE_BITS * (magnitude >= lim)


def _refine_rows(
    y: np.ndarray, q: np.ndarray, step: float, analysis: entropy.Analysis, chans: np.ndarray, group: int,
    lam: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted channels: each row left to right, q[j] ∈ {⌊y/Δ⌋, ⌊y/Δ⌋ + 1} by its error and the
    bits of the two differences it enters, q[j] − q[j−1] (q[j−1] as chosen) and q[j+1] − q[j]
    (q[j+1] as the plain quantiser has it), each channel's bits at its price ``lam`` (n,).
    Returns the symbols and each channel's change in bits under the plain symbols' rows."""
    n, h, w = q.shape
    channel = np.repeat(chans, h * w)
    position = np.tile(np.arange(h * w), n)
    rows = analysis.rows(channel, position, group).reshape(n, h, w)
    del channel, position
    v = y / np.float32(step)
    low = np.floor(v)
    new = q.copy()
    previous = np.zeros((n, h), dtype=np.int64)
    price = lam[:, None]
    for j in range(w):
        lo = low[..., j].astype(np.int64)
        cost_lo, cost_up = (_row_cost(v, rows, new, previous, j, c, price) for c in (lo, lo + 1))
        previous = np.clip(lo + (cost_up < cost_lo), -entropy.MAX_SYMBOL, entropy.MAX_SYMBOL)
        new[..., j] = previous
    change = _bits(rows, prediction.residuals(new)) - _bits(rows, prediction.residuals(q))
    return new, change.sum(axis=(1, 2), dtype=np.float64)


def _row_cost(
    v: np.ndarray, rows: np.ndarray, new: np.ndarray, previous: np.ndarray, j: int, c: np.ndarray,
    price: np.ndarray,
) -> np.ndarray:
    """(v − c)² + price · bits of the two differences c enters at column j of a predicted row
    (``price``: each channel's λ, (n, 1))."""
    total = np.square(v[..., j] - c) + price * _bits(rows[..., j], c - previous)
    if j + 1 < v.shape[-1]:
        total += price * _bits(rows[..., j + 1], new[..., j + 1].astype(np.int64) - c)
    return total
