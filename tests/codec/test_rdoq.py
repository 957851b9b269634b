"""Rate–distortion optimised quantisation: what it may choose, what it costs, what it saves."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from aic_worker.codec import entropy, rate_control, rdoq

GROUP = 8
VERSION = 4


def _latent(seed: int) -> np.ndarray:
    """A KLT-like latent: Laplace values whose scale falls with the channel, smooth leading channels."""
    rng = np.random.default_rng(seed)
    scale = 40 * 0.93 ** np.arange(64)
    y = rng.laplace(size=(64, 20, 24)) * scale[:, None, None]
    y[:4] += np.cumsum(rng.normal(0, 3, (4, 20, 24)), axis=2) * 10
    return y.astype(np.float32)


@pytest.fixture(params=[(1, rate_control.STEP_ONE), (2, rate_control.STEP_ONE + 96)])
def case(request) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    seed, code = request.param
    y = _latent(seed)
    q = rate_control.quantise(y, code, GROUP)
    step = rate_control.step_of(code)
    new, estimate = rdoq.refine(y, q.copy(), step, GROUP, VERSION)
    return y, q, step, new, estimate


def test_each_symbol_is_one_of_the_two_values_around_its_own(case) -> None:
    y, q, step, new, _ = case
    predicted = entropy.analyse(q, GROUP, VERSION).predicted
    n = new.shape[0]
    assert predicted[:n].any() and not predicted[:n].all()
    v = y[:n] / np.float32(step)
    rise = np.abs(new) - np.floor(np.abs(v))
    assert set(np.unique(rise)) <= {0, 1}
    assert (np.sign(new) * np.sign(v) >= 0).all()
    assert set(np.unique(new[predicted[:n]] - np.floor(v[predicted[:n]]))) <= {0, 1}
    for chosen in (predicted[:n], ~predicted[:n]):     # predicted channels are weighed too
        assert not np.array_equal(new[chosen], q[:n][chosen])
    assert new[-GROUP:].any()                           # trailing all-zero groups are dropped


def test_the_estimate_is_the_coders_within_a_fraction_of_a_percent(case) -> None:
    _, _, _, new, estimate = case
    exact = entropy.estimate_bits(new, GROUP, VERSION)
    assert estimate.shape == exact.shape
    assert estimate.sum() == pytest.approx(exact.sum(), rel=0.005)
    coded = sum(map(len, entropy.encode(new, GROUP, VERSION))) * 8
    assert coded == pytest.approx(exact.sum(), rel=0.01)


@pytest.mark.parametrize(("seed", "coarser"), [(3, 256), (2, 320)])
def test_the_estimate_follows_the_changed_symbols_of_predicted_channels(seed: int, coarser: int) -> None:
    """At coarse steps the first group (its channels predicted, ``prediction``) is where the
    bits change most: the estimate tracks that change to a tenth."""
    y = _latent(seed)
    code = rate_control.STEP_ONE + coarser
    q = rate_control.quantise(y, code, GROUP)
    new, estimate = rdoq.refine(y, q.copy(), rate_control.step_of(code), GROUP, VERSION)
    exact, plain = (entropy.estimate_bits(s, GROUP, VERSION)[0] for s in (new, q))
    assert abs(exact - plain) > 50
    assert abs(estimate[0] - exact) <= 0.1 * abs(exact - plain)


def test_it_lowers_the_cost_it_weighs(case) -> None:
    """Σ (|y/Δ| − |q|)² + LAMBDA · bits, with the coder's own bits, falls from the plain symbols."""
    y, q, step, new, _ = case

    def cost(symbols: np.ndarray) -> float:
        u = np.abs(y) / step
        padded = np.zeros(y.shape, dtype=np.int64)
        padded[: symbols.shape[0]] = np.abs(symbols)
        distortion = np.square(u - padded).sum(dtype=np.float64)
        return distortion + rdoq.LAMBDA * float(entropy.estimate_bits(symbols, GROUP, VERSION).sum())

    assert cost(new) < cost(q)


def test_rate_control_codes_the_symbols_it_chose() -> None:
    """What ``fit`` encodes is ``quantised``'s choice at its step, and it fits the budget."""
    y = _latent(3)
    budget = 3000

    def sizer(payloads: list[bytes]) -> int:
        return 40 + sum(len(p) + 3 for p in payloads)

    result = rate_control.fit(y, budget, GROUP, sizer, trade=False)
    assert result.size <= budget
    expected, _ = rate_control.quantised(y, result.code, GROUP)
    decoded = entropy.decode(result.payloads, 64, GROUP, 20, 24, version=VERSION)
    assert np.array_equal(decoded[: result.q.shape[0]], expected[: result.q.shape[0]])
    plain = rate_control.quantise(y, result.code, GROUP)[: result.q.shape[0]]
    assert plain.shape == result.q.shape and not np.array_equal(plain, result.q)


def test_the_plain_quantiser_is_still_there_to_compare_with() -> None:
    """``optimise=False`` (``Codec.rdoq = False``, what the benches compare against) codes
    the fixed dead zone's symbols, within the budget too."""
    y = _latent(4)
    budget = 2500

    def sizer(payloads: list[bytes]) -> int:
        return 40 + sum(len(p) + 3 for p in payloads)

    result = rate_control.fit(y, budget, GROUP, sizer, optimise=False)
    assert rate_control.FILL * budget <= result.size <= budget
    plain = rate_control.quantise(y, result.code, GROUP)
    assert np.array_equal(result.q, plain[: result.q.shape[0]])


def test_chroma_prices_make_colour_rows_dearer_and_leave_grey_ones_at_lambda() -> None:
    rng = np.random.default_rng(0)
    pattern = rng.normal(size=(16, 16))
    grey = np.stack([pattern] * 3)
    colour = np.stack([pattern, -pattern * 0.299 / 0.587, 0 * pattern])   # no luma at all
    mixed = grey + colour
    prices = rdoq.chroma_prices(np.stack([grey, colour, mixed, 0.5 * colour]))
    assert prices.dtype == np.float32
    assert prices[0] == pytest.approx(1.0)
    assert prices[1] == pytest.approx(1 + rdoq.CHROMA_PRICE)
    assert prices[3] == pytest.approx(prices[1])                          # a row's scale does not matter
    assert 1.0 < prices[2] < prices[1]


@pytest.mark.parametrize("code", [rate_control.STEP_ONE, rate_control.STEP_ONE + 96])
def test_dearer_channels_get_smaller_symbols_and_prices_of_one_change_nothing(code: int) -> None:
    """Symbol by symbol where each is weighed alone; predicted channels weigh differences, so
    there only their sum must fall."""
    y = _latent(4)
    step = rate_control.step_of(code)
    plain = rate_control.quantise(y, code, GROUP)
    base, base_bits = rdoq.refine(y, plain.copy(), step, GROUP, VERSION)
    ones, ones_bits = rdoq.refine(y, plain.copy(), step, GROUP, VERSION, np.ones(64, dtype=np.float32))
    assert np.array_equal(ones, base) and np.array_equal(ones_bits, base_bits)
    prices = np.ones(64, dtype=np.float32)
    prices[1::3] = 4.0                                                     # predicted channels among them
    dear, dear_bits = rdoq.refine(y, plain.copy(), step, GROUP, VERSION, prices)
    n = min(len(dear), len(base))
    dearer = prices[:n] > 1
    alone = dearer & ~entropy.analyse(plain, GROUP, VERSION).predicted[:n]
    assert (np.abs(dear[:n][alone]) <= np.abs(base[:n][alone])).all()
    assert np.abs(dear[:n][dearer]).sum() < np.abs(base[:n][dearer]).sum()
    assert dear_bits.sum() < base_bits.sum()


def test_without_prices_the_symbols_are_release_0_6_1s_even_on_a_tie() -> None:
    """λ stays the float64 0.04 it was: y[14, 0, 0] sits where a float32 λ rounds the other way."""
    y = _latent(1)
    y[14, 0, 0] = np.copysign(np.float32(3.501859426498413), y[14, 0, 0])
    q = rate_control.quantise(y, rate_control.STEP_ONE, GROUP)
    new, _ = rdoq.refine(y, q, 1.0, GROUP, VERSION)
    assert abs(new[14, 0, 0]) == 3
    digest = hashlib.sha256(np.ascontiguousarray(new, dtype="<i4").tobytes()).hexdigest()
    assert digest == "7c7152e1f64bdb1b63093688a7be298fb7c1a9092f5501a0e704c00aa1adfdde"   # 952da8a's


def test_predicted_channels_are_priced_too() -> None:
    """The row-difference channels (``_refine_rows``) weigh their bits at their own price."""
    y = _latent(2)
    code = rate_control.STEP_ONE + 96
    plain = rate_control.quantise(y, code, GROUP)
    predicted = entropy.analyse(plain, GROUP, VERSION).predicted
    assert predicted.any()
    prices = np.where(predicted, 20.0, 1.0).astype(np.float32)
    base, _ = rdoq.refine(y, plain.copy(), rate_control.step_of(code), GROUP, VERSION)
    dear, _ = rdoq.refine(y, plain.copy(), rate_control.step_of(code), GROUP, VERSION, prices)
    n = int(np.flatnonzero(predicted)[-1]) + 1
    assert np.abs(dear[:n][predicted[:n]]).sum() < np.abs(base[:n][predicted[:n]]).sum()
    assert np.array_equal(dear[:n][~predicted[:n]], base[:n][~predicted[:n]])


def test_too_few_prices_are_refused() -> None:
    y = _latent(1)
    q = rate_control.quantise(y, rate_control.STEP_ONE, GROUP)
    with pytest.raises(ValueError, match="channel prices"):
        rdoq.refine(y, q, 1.0, GROUP, VERSION, np.ones(8, dtype=np.float32))
