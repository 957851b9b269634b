"""The size forecast: the closed-form entropy of independent Laplace channels."""

from __future__ import annotations

import numpy as np

from aic_worker.codec import size_forecast


def _plain_entropy_bits(y: np.ndarray, step: float) -> float:
    """Empirical order-0 entropy of each channel's dead-zone symbols, summed (what the forecast models)."""
    total = 0.0
    for channel in y:
        q = np.sign(channel) * np.floor(np.abs(channel) / step + 1 - size_forecast.THRESHOLD)
        _, counts = np.unique(q, return_counts=True)
        p = counts / counts.sum()
        total += -(counts * np.log2(p)).sum()
    return total


def test_the_forecast_matches_the_entropy_of_laplace_channels() -> None:
    rng = np.random.default_rng(0)
    scales = np.array([40.0, 12.0, 3.0, 0.8])
    y = (rng.laplace(size=(4, 128, 128)) * scales[:, None, None]).astype(np.float32)
    measured = size_forecast.channel_scales(y)
    assert np.allclose(measured, scales, rtol=0.02)
    for step in (0.5, 2.0, 8.0):
        forecast = size_forecast.bits(measured, 128 * 128, np.array([step]))[0]
        assert abs(forecast / _plain_entropy_bits(y, step) - 1) < 0.03


def test_the_forecast_falls_with_the_step_and_silent_channels_cost_nothing() -> None:
    y = np.zeros((3, 16, 16), dtype=np.float32)
    y[0] = np.random.default_rng(1).laplace(size=(16, 16)) * 5
    scales = size_forecast.channel_scales(y)
    steps = 2.0 ** np.linspace(-4, 6, 200)
    forecast = size_forecast.bits(scales, 256, steps)
    assert np.all(np.diff(forecast) < 0) and forecast[-1] >= 0
    assert np.allclose(forecast, size_forecast.bits(scales[:1], 256, steps))
