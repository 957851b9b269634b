"""What the encoder's choices gain: BD-rate in PSNR and MS-SSIM of step profiles and quantisers.

Each image is compressed by ``Codec.compress`` (rate control, entropy coding and the
filter choice included) at every ratio, once per quantiser (``--quantisers``: ``rdoq``, the
rate–distortion optimised one the encoder uses, and ``plain``, the fixed dead zone) and
tilt code (``--tilts``) and ratio from which the symbols aim at the synthesis
(``--target-from``: ``Codec.target_from``; ``inf`` never, ``0`` always) and price of the
colour channels' bits in RDOQ (``--chroma-prices``: ``rdoq.CHROMA_PRICE``; 0 none), and
decoded; the table gives mean PSNR, mean MS-SSIM (as −10·log10(1 − MS-SSIM)) and bpp per
choice, and each choice's BD-rate against the first (by default the uniform step of
versions 1 to 3), averaged over images, in RGB PSNR and MS-SSIM and in those of the
BT.601 luma (``quality.luma``).

Images (never Kodak, where nothing is tuned): ``--train-sample N`` photos of the training
set as ``bench/coding_gains.py`` draws them (at most 768x512), and ``--wallpapers N`` of its
large ``debian_wallpaper_photos``, downscaled 2x and cut to their central 1024x768: the
larger, smoother photos where MS-SSIM had been AIC's weak side; ``--images DIR``: the PNGs
of a folder besides (cuts of training photos made for a question, say).

    python bench/step_profile.py --train-sample 4 --wallpapers 3 --tilts 0 4 6
    python bench/step_profile.py --train-sample 4 --wallpapers 3 --tilts 4 --quantisers plain rdoq
    python bench/step_profile.py --train-sample 4 --wallpapers 3 --tilts 4 --target-from inf 0
    python bench/step_profile.py --tilts 4 --target-from 64 --chroma-prices 0 1.5 3 5
"""

from __future__ import annotations

import argparse
import math
import platform
from pathlib import Path

import numpy as np
import torch
from coding_gains import SHARED, folder, train_sample  # bench/ is on sys.path when run as a script
from PIL import Image
from rd import bd_rate, db, measure

from aic_worker.codec import Codec, rdoq

RATIOS = (12, 24, 48, 96, 192)
WALLPAPERS = SHARED / "train" / "debian_wallpaper_photos"
CROP = (1024, 768)


def wallpapers(n: int) -> list[np.ndarray]:
    """The first ``n`` wallpaper photos (by name), halved and cut to their centre."""
    out = []
    for path in sorted(WALLPAPERS.glob("*.jpg"))[:n]:
        with Image.open(path) as im:
            im = im.convert("RGB").reduce(2)
        w, h = min(im.width, CROP[0]), min(im.height, CROP[1])
        left, top = (im.width - w) // 2, (im.height - h) // 2
        out.append(np.asarray(im.crop((left, top, left + w, top + h))))
    return out


Curve = tuple[list[float], ...]   # bpp, then PSNR, MS-SSIM dB, PSNR-Y, MS-SSIM-Y dB
MEASURES = ("PSNR", "MS-SSIM", "PSNR-Y", "MS-SSIM-Y")


def curve(codec: Codec, rgb: np.ndarray, ratios: tuple[int, ...]) -> Curve:
    """(bpp, PSNR, MS-SSIM in dB, PSNR-Y, MS-SSIM-Y in dB) of one image at each ratio."""
    image = Image.fromarray(rgb)
    out: Curve = ([], [], [], [], [])
    for ratio in ratios:
        data = codec.compress(image, ratio)
        m = measure(rgb, codec.decompress(data))
        values = (len(data) * 8 / (rgb.shape[0] * rgb.shape[1]), m["psnr"], db(m["msssim"]),
                  m["psnr_y"], db(m["msssim_y"]))
        for column, value in zip(out, values, strict=True):
            column.append(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-sample", type=int, default=4, metavar="N")
    ap.add_argument("--seed", type=int, default=23, help="of the training sample")
    ap.add_argument("--wallpapers", type=int, default=3, metavar="N")
    ap.add_argument("--tilts", type=int, nargs="+", default=[0, 4])
    ap.add_argument("--quantisers", choices=["plain", "rdoq"], nargs="+", default=["rdoq"])
    ap.add_argument("--target-from", type=float, nargs="+", default=[math.inf], metavar="RATIO")
    ap.add_argument("--chroma-prices", type=float, nargs="+", default=[rdoq.CHROMA_PRICE], metavar="PRICE")
    ap.add_argument("--model", type=Path)
    ap.add_argument("--images", type=Path, help="also the PNGs of this folder (never Kodak)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    codec = Codec.load(args.model, device="cpu")
    images = wallpapers(args.wallpapers)
    if args.train_sample:
        images += train_sample(args.train_sample, args.seed)
    if args.images:
        images += folder(args.images)
    print(f"{len(images)} images ({args.wallpapers} wallpapers, {args.train_sample} training photos"
          f"{f', {args.images}' if args.images else ''}), ratios {RATIOS}, "
          f"model {codec.model_id[:16]}…, {platform.machine()}, torch {torch.__version__}")
    print("| quantiser, tilt (a), aimed from, colour price | mean PSNR per ratio | mean MS-SSIM dB per ratio "
          "| mean PSNR-Y per ratio | mean MS-SSIM-Y dB per ratio | " + " | ".join(f"BD {m}" for m in MEASURES)
          + " |")
    print("|---" * 9 + "|")
    rows = codec.model.g_s.block.weight.detach().numpy()
    choices = [(q, t, f, c) for q in args.quantisers for t in args.tilts for f in args.target_from
               for c in args.chroma_prices]
    curves: dict[tuple[str, int, float, float], list[Curve]] = {}
    for choice in choices:
        codec.rdoq, codec.tilt, codec.target_from = choice[0] == "rdoq", choice[1], choice[2]
        codec.prices = rdoq.chroma_prices(rows, choice[3]) if choice[3] else None
        curves[choice] = [curve(codec, rgb, RATIOS) for rgb in images]
        base = next(iter(curves.values()))
        bd = [
            np.mean([bd_rate(b[0], b[i], c[0], c[i]) for b, c in zip(base, curves[choice], strict=True)])
            for i in range(1, 5)
        ]
        means = [" / ".join(f"{v:.2f}" for v in np.mean([c[i] for c in curves[choice]], axis=0))
                 for i in range(1, 5)]
        cells = " | ".join(means) + " | " + " | ".join(f"{v:+.2f} %" for v in bd)
        print(f"| {choice[0]}, {choice[1]} ({choice[1] / 8:g}), {choice[2]:g}x, {choice[3]:g} | {cells} |",
              flush=True)

if __name__ == "__main__":
    main()
