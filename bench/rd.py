"""Rate-distortion benchmark: AIC against JPEG, WebP, AVIF and JPEG XL at the same byte budgets.

For each image and each ratio R the budget is W·H·3/R bytes. AIC's rate control
fills it; each classic codec gets the largest quality whose file fits (no file:
"n/a"). Prints and writes Markdown tables (RGB PSNR and MS-SSIM; the same of the BT.601
luma, ``quality.luma``), BD-rates in all four of every codec against JPEG and of AIC
against WebP, AVIF and JPEG XL (also with MS-SSIM in dB, and over only the ratios every
codec reaches on every image: the raw-MS-SSIM figure leans on the coarsest ratios), encode/decode
seconds, an RD-curve PNG and a strip of one image at every ratio beside JPEG of
the same size. JPEG XL comes from ``pillow-jxl-plugin`` (the ``bench`` extra);
without it JPEG XL is left out, and the report says so.

    python bench/rd.py [--images ../shared/data/kodak] [--out bench/out]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import statistics
import time
from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from aic_worker.codec import Codec
from aic_worker.codec.quality import luma, ms_ssim, psnr

try:
    import pillow_jxl  # noqa: F401  (registers Pillow's "JXL" format)
    JXL_MISSING = None
except ImportError as exc:
    JXL_MISSING = f"JPEG XL left out: {exc} (pip install -e '.[bench]')"

RATIOS = (8, 16, 32, 64, 128, 256)
CLASSIC = {"JPEG": ("JPEG", {}), "WebP": ("WEBP", {"method": 6}), "AVIF": ("AVIF", {"speed": 6})}
if JXL_MISSING is None:
    CLASSIC["JPEG XL"] = ("JXL", {"effort": 7})    # libjxl's default effort; quality → distance


def classic_fit(img: Image.Image, fmt: str, opts: dict, budget: int) -> bytes | None:
    """Largest-quality file of ``fmt`` within ``budget`` bytes (bisection on quality)."""
    lo, hi, best = 1, 100, None
    while lo <= hi:
        q = (lo + hi) // 2
        buf = io.BytesIO()
        try:
            img.save(buf, format=fmt, quality=q, **opts)
        except RuntimeError:        # libjxl refuses quality 100 (lossless) on some photos
            hi = q - 1
            continue
        if buf.tell() <= budget:
            best, lo = buf.getvalue(), q + 1
        else:
            hi = q - 1
    return best


METRICS = ("psnr", "msssim", "psnr_y", "msssim_y")   # RGB, then BT.601 luma


def measure(ref: np.ndarray, out: Image.Image) -> dict[str, float]:
    """The METRICS of a decoded image against the (H, W, 3) original."""
    got = np.asarray(out.convert("RGB"))
    ref_y, got_y = luma(ref), luma(got)
    return {"psnr": psnr(ref, got), "msssim": ms_ssim(ref, got),
            "psnr_y": psnr(ref_y, got_y), "msssim_y": ms_ssim(ref_y, got_y)}


def bd_rate(r1: list[float], d1: list[float], r2: list[float], d2: list[float]) -> float | None:
    """Bjøntegaard delta rate of curve 2 against curve 1, in percent (cubic fit in log-rate)."""
    if min(len(r1), len(r2)) < 4:
        return None
    p1 = np.polyfit(d1, np.log(r1), 3)
    p2 = np.polyfit(d2, np.log(r2), 3)
    lo, hi = max(min(d1), min(d2)), min(max(d1), max(d2))
    if lo >= hi:
        return None
    i1 = np.polyval(np.polyint(p1), hi) - np.polyval(np.polyint(p1), lo)
    i2 = np.polyval(np.polyint(p2), hi) - np.polyval(np.polyint(p2), lo)
    return float((np.exp((i2 - i1) / (hi - lo)) - 1) * 100)


def run(images: list[Path], codec: Codec, ratios: tuple[int, ...]) -> dict:
    rows: dict[str, dict[int, list[dict]]] = {c: {r: [] for r in ratios} for c in ["AIC", *CLASSIC]}
    for path in images:
        with Image.open(path) as im:
            img = im.convert("RGB")
        ref = np.asarray(img)
        raw = ref.size
        for r in ratios:
            budget = raw // r
            t0 = time.perf_counter()
            data = codec.compress(img, ratio=r)
            t1 = time.perf_counter()
            out = codec.decompress(data)
            t2 = time.perf_counter()
            rows["AIC"][r].append({"bytes": len(data), **measure(ref, out), "enc": t1 - t0, "dec": t2 - t1})
            for name, (fmt, opts) in CLASSIC.items():
                blob = classic_fit(img, fmt, opts, budget)
                if blob is None:
                    rows[name][r].append({"bytes": None})
                    continue
                with Image.open(io.BytesIO(blob)) as dec:
                    rows[name][r].append({"bytes": len(blob), **measure(ref, dec)})
        print(f"{path.name}: AIC " + " ".join(
            f"{r}x {rows['AIC'][r][-1]['psnr']:.2f}dB" for r in ratios), flush=True)
    return rows


def summarise(rows: dict, pixels: list[int], ratios: tuple[int, ...]) -> dict:
    summary: dict[str, dict] = {}
    for name, per_ratio in rows.items():
        summary[name] = {}
        for r in ratios:
            items = per_ratio[r]
            if any(i["bytes"] is None for i in items):
                fit = sum(i["bytes"] is not None for i in items)
                summary[name][r] = {"fit": fit, "n": len(items)}
                continue
            summary[name][r] = {
                "fit": len(items), "n": len(items),
                "bpp": statistics.mean(8 * i["bytes"] / px for i, px in zip(items, pixels, strict=True)),
                "ratio": statistics.mean(3 * px / i["bytes"] for i, px in zip(items, pixels, strict=True)),
                **{m: statistics.mean(i[m] for i in items) for m in METRICS},
            }
            if name == "AIC":
                summary[name][r]["enc_median"] = statistics.median(i["enc"] for i in items)
                summary[name][r]["dec_median"] = statistics.median(i["dec"] for i in items)
                achieved = [3 * px / i["bytes"] for i, px in zip(items, pixels, strict=True)]
                summary[name][r]["ratio_min"] = min(achieved)
                summary[name][r]["ratio_max"] = max(achieved)
    return summary


def curve(
    summary: dict, name: str, metric: str, ratios: Collection[int] | None = None
) -> tuple[list[float], list[float]]:
    """(bpp, ``metric``) at each ratio (of ``ratios``, default all) where every image has a
    file; ``metric`` "msssim_db" is the mean MS-SSIM as −10·log10(1 − MS-SSIM)."""
    pts = [(v["bpp"], _value(v, metric)) for r, v in summary[name].items()
           if "bpp" in v and (ratios is None or r in ratios)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _value(point: dict, metric: str) -> float:
    return db(point["msssim"]) if metric == "msssim_db" else point[metric]


def db(structure: float) -> float:
    """An MS-SSIM as −10·log10(1 − MS-SSIM): the fine end spread out."""
    return -10 * math.log10(max(1e-10, 1 - structure))


def common_ratios(summary: dict) -> list[int]:
    """The ratios at which every codec has a file of every image (of the codecs installed:
    without JPEG XL the set may be larger)."""
    ratios = next(iter(summary.values())).keys()
    return [r for r in ratios if all("bpp" in per_ratio[r] for per_ratio in summary.values())]


def bd_rates(
    summary: dict, metrics: tuple[str, ...] = METRICS, ratios: Collection[int] | None = None
) -> dict[str, float | None]:
    """"NAME metric": NAME's BD-rate against JPEG; "AIC vs NAME metric": AIC's against NAME.

    BD-rate fits a cubic of log-rate over the quality range both curves span, so it depends
    on which ratios enter: raw MS-SSIM bunches the fine ratios near 1, so the span down to
    the coarsest points weighs most. ``ratios`` (the common ones; with 4 the cubic passes
    through every point, with fewer there is no figure) and "msssim_db" show how much.
    """
    bd: dict[str, float | None] = {}
    for name in CLASSIC:
        label = "AIC" if name == "JPEG" else name
        for metric in metrics:
            bd[f"{label} {metric}"] = bd_rate(*curve(summary, "JPEG", metric, ratios),
                                              *curve(summary, label, metric, ratios))
    for name in CLASSIC:
        if name != "JPEG":
            for metric in metrics:
                bd[f"AIC vs {name} {metric}"] = bd_rate(*curve(summary, name, metric, ratios),
                                                        *curve(summary, "AIC", metric, ratios))
    return bd


def bd_line(bd: dict[str, float | None], against_others: bool = False) -> str:
    """The BD-rates of ``bd`` against JPEG, or (``against_others``) AIC's against the others."""
    keys = [k for k in bd if k.startswith("AIC vs ") == against_others]
    prefix = "AIC " if against_others else ""
    cells = (f"{k.removeprefix(prefix)}: {'n/a' if bd[k] is None else f'{bd[k]:+.1f}%'}" for k in keys)
    return ", ".join(cells)


def common_line(common: list[int], bd: dict[str, float | None]) -> str:
    """The report's line of BD-rates over the common ratios, or why there are none."""
    head = f"Only the ratios every codec reaches on every image ({', '.join(f'{r}x' for r in common)})"
    if len(common) < 4:
        return head + ": fewer than 4, no BD-rate"
    return f"{head}: against JPEG {bd_line(bd)}; AIC's against the others {bd_line(bd, True)}"


def table(summary: dict, ratios: tuple[int, ...], suffix: str = "") -> str:
    """PSNR / MS-SSIM (bpp) of every codec at every ratio; ``suffix`` "_y": of the luma."""
    label = "PSNR-Y / MS-SSIM-Y" if suffix else "PSNR / MS-SSIM"
    lines = ["| ratio | " + " | ".join(f"{n} {label} (bpp)" for n in summary) + " |",
             "|---" * (len(summary) + 1) + "|"]
    for r in ratios:
        cells = []
        for name in summary:
            v = summary[name][r]
            psnr_, msssim_ = v.get("psnr" + suffix), v.get("msssim" + suffix)
            cells.append(f"{psnr_:.2f} / {msssim_:.4f} ({v['bpp']:.3f})" if "bpp" in v
                         else f"n/a ({v['fit']}/{v['n']} fit)")
        lines.append(f"| {r}x | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in summary:
        for ax, metric in zip(axes, ("psnr", "msssim"), strict=True):
            x, y = curve(summary, name, metric)
            if x:
                ax.plot(x, y, "o-", label=name)
    for ax, label in zip(axes, ("PSNR (dB, RGB)", "MS-SSIM"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Kodak: mean over images at each ratio (8x … 256x)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def strip(path: Path, codec: Codec, ratios: tuple[int, ...], out: Path) -> None:
    """One image's crop at every ratio (AIC top, JPEG of the same budget below)."""
    with Image.open(path) as im:
        img = im.convert("RGB")
    box = (img.width // 2 - 128, img.height // 2 - 128, img.width // 2 + 128, img.height // 2 + 128)
    order = sorted(ratios, reverse=True)
    sheet = Image.new("RGB", (256 * len(order), 2 * 256 + 40), "white")   # labels above each row
    draw = ImageDraw.Draw(sheet)
    for i, r in enumerate(order):
        budget = img.width * img.height * 3 // r
        ours = codec.decompress(codec.compress(img, ratio=r))
        sheet.paste(ours.crop(box), (256 * i, 20))
        blob = classic_fit(img, "JPEG", {}, budget)
        if blob:
            with Image.open(io.BytesIO(blob)) as jp:
                sheet.paste(jp.convert("RGB").crop(box), (256 * i, 296))
        draw.text((256 * i + 4, 4), f"AIC {r}x", fill="black")
        draw.text((256 * i + 4, 280), f"JPEG {r}x" if blob else f"JPEG {r}x: no file fits", fill="black")
    sheet.save(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/kodak")
    ap.add_argument("--model", type=Path, help="weights (default: the shipped model)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("out"))
    ap.add_argument("--limit", type=int, help="only the first N images")
    ap.add_argument("--strip-image", default="kodim23.png")
    args = ap.parse_args()
    images = sorted(args.images.glob("*.png"))[: args.limit]
    codec = Codec.load(args.model, device="cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = run(images, codec, RATIOS)
    pixels = []
    for p in images:
        with Image.open(p) as im:
            pixels.append(im.width * im.height)
    summary = summarise(rows, pixels, RATIOS)
    bd = bd_rates(summary)
    common = common_ratios(summary)
    bd_common = bd_rates(summary, ("psnr", "msssim", "msssim_db"), common)
    bd_db = bd_rates(summary, ("msssim_db",))
    aic = summary["AIC"]
    text = [
        f"Images: {len(images)} from {args.images.name}; model {codec.model_id[:16]}; "
        f"torch threads {torch.get_num_threads()}; {platform.processor() or platform.machine()}",
        "", table(summary, RATIOS), "",
        "Luma (BT.601 Y = 0.299 R + 0.587 G + 0.114 B, unrounded), the same files:", "",
        table(summary, RATIOS, "_y"), "",
        "BD-rate against JPEG (negative = fewer bytes for the same quality): "
        + bd_line(bd),
        "",
        "AIC's BD-rate against the others: " + bd_line(bd, True),
        "",
        "MS-SSIM in dB (−10·log10(1 − the mean MS-SSIM)), each codec's own ratios: against JPEG "
        + bd_line(bd_db) + "; AIC's against the others " + bd_line(bd_db, True),
        "",
        common_line(common, bd_common),
        *([f"({JXL_MISSING})"] if JXL_MISSING else []),
        "",
        "| ratio | achieved min–max | AIC encode s (median) | AIC decode s (median) |",
        "|---|---|---|---|",
        *[f"| {r}x | {aic[r]['ratio_min']:.2f}–{aic[r]['ratio_max']:.2f} | {aic[r]['enc_median']:.3f} | "
          f"{aic[r]['dec_median']:.3f} |" for r in RATIOS],
    ]
    report = "\n".join(text)
    print(report)
    (args.out / "rd.md").write_text(report + "\n")
    results = {"summary": summary, "bd_rate": bd, "bd_rate_msssim_db": bd_db,
               "common_ratios": common, "bd_rate_common": bd_common}
    (args.out / "rd.json").write_text(json.dumps(results, indent=1))
    plot(summary, args.out / "rd.png")
    strip_src = args.images / args.strip_image
    if strip_src.exists():
        strip(strip_src, codec, RATIOS, args.out / "strip.png")


if __name__ == "__main__":
    main()
