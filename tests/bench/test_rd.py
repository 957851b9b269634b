"""bench/rd.py's measures: RGB and BT.601 luma, in the tables and BD-rates it reports."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from aic_worker.codec import Codec
from aic_worker.codec.quality import luma
from tests.codec.conftest import photo_like

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import rd  # noqa: E402


def test_luma_is_bt601_and_grey_stays_grey() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 90]]], dtype=np.uint8)
    assert np.allclose(luma(rgb)[..., 0], [[0.299 * 255, 0.587 * 255, 0.114 * 255, 90]])


def test_a_chroma_only_error_costs_rgb_psnr_but_not_luma_psnr() -> None:
    ref = np.asarray(photo_like(96, 64))
    shifted = ref.astype(np.int32)
    # +6 red and −3 green move Y by 0.299·6 − 0.587·3 ≈ 0.03: an error of the chroma
    shifted[..., 0] += 6
    shifted[..., 1] -= 3
    out = Image.fromarray(np.clip(shifted, 0, 255).astype(np.uint8))
    m = rd.measure(ref, out)
    assert set(m) == set(rd.METRICS)
    assert m["psnr"] < 40 < m["psnr_y"]
    assert m["msssim"] < m["msssim_y"]


def test_the_report_tables_rgb_and_luma_for_every_codec(tmp_path: Path) -> None:
    photo_like(96, 64).save(tmp_path / "a.png")
    ratios = (8, 16, 32, 64)
    rows = rd.run([tmp_path / "a.png"], Codec.load(device="cpu"), ratios)
    summary = rd.summarise(rows, [96 * 64], ratios)
    aic = summary["AIC"][16]
    assert set(rd.METRICS) <= set(aic)
    assert aic["psnr_y"] != aic["psnr"]
    luma_table = rd.table(summary, ratios, "_y").splitlines()
    assert "AIC PSNR-Y / MS-SSIM-Y (bpp)" in luma_table[0]
    assert luma_table[3].startswith("| 16x | " + f"{aic['psnr_y']:.2f} / {aic['msssim_y']:.4f}")
    x, y = rd.curve(summary, "JPEG", "msssim_y")
    assert len(x) == len(y) >= 2


def _point(bpp: float, quality: float) -> dict[str, float]:
    return {"bpp": bpp, "psnr": quality, "msssim": 1 - 10 ** (-quality / 20), "psnr_y": quality,
            "msssim_y": 1 - 10 ** (-quality / 20)}


def test_bd_rates_over_the_common_ratios_and_in_msssim_db() -> None:
    """A codec that reaches coarser ratios than JPEG: the common ratios leave those out, and
    the MS-SSIM dB curve is the raw one, transformed."""
    ratios = (8, 16, 32, 64, 128, 256)
    bpp = {r: 24 / r for r in ratios}
    jpeg = {r: _point(bpp[r], 20 + 20 * bpp[r]) for r in ratios[:4]}
    jpeg |= {r: {"fit": 0, "n": 1} for r in ratios[4:]}
    # AIC saves 20 % of the bytes at every quality up to 64x, and far more below
    aic = {r: _point(0.8 * bpp[r], 20 + 20 * bpp[r] + (3.0 if r > 64 else 0.0)) for r in ratios}
    avif = jpeg | {128: _point(bpp[128], 20 + 20 * bpp[128])}      # AVIF alone reaches 128x too
    summary = {"AIC": aic, **{name: jpeg for name in rd.CLASSIC}, "AVIF": avif}
    assert rd.common_ratios(summary) == [8, 16, 32, 64]
    assert rd.common_ratios({"AIC": aic, "AVIF": avif}) == [8, 16, 32, 64, 128]
    x, y = rd.curve(summary, "AIC", "msssim_db", [8, 16])
    assert x == [aic[8]["bpp"], aic[16]["bpp"]]
    assert np.allclose(y, [(20 + 20 * bpp[8]) / 2, (20 + 20 * bpp[16]) / 2])
    common = rd.bd_rates(summary, ("psnr",), rd.common_ratios(summary))
    others = [n for n in rd.CLASSIC if n != "JPEG"]
    assert set(common) == {"AIC psnr", *(f"{n} psnr" for n in others), *(f"AIC vs {n} psnr" for n in others)}
    assert abs(common["AIC psnr"] + 20) < 0.01
    assert abs(common["AIC vs AVIF psnr"] + 20) < 0.01     # AVIF's 128x left out on its side too
    every = rd.bd_rates(summary, ("psnr",))
    assert every["AIC psnr"] < -21         # the coarse points AIC alone reaches bend its fit
    assert every["AIC vs AVIF psnr"] != common["AIC vs AVIF psnr"]
    against_jpeg = rd.bd_line(common)
    assert against_jpeg.startswith("AIC psnr: -20.0%") and "vs " not in against_jpeg
    line = rd.bd_line(common, against_others=True)
    assert line.startswith("vs WebP psnr: -20.0%") and "AIC psnr" not in line
    assert rd.common_line(rd.common_ratios(summary), common).endswith(line)
    assert rd.common_line([8, 16, 32], common).endswith("fewer than 4, no BD-rate")
