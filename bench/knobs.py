"""Which knob should rate control turn? Step size against channel truncation, measured.

For each image and ratio R: PSNR of (a) ``compress(R)``, which turns the quantisation
step, and (b) ``truncate(compress(8), R)``, which keeps the fine step of the 8x file and
drops trailing channel groups until R fits — what a stored file goes through when it is
cut down without its original. Prints a Markdown table for docs/model.md.

    python bench/knobs.py [--images ../shared/data/kodak] [--limit N]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from PIL import Image

from aic_worker.codec import Codec, bitstream
from aic_worker.codec.quality import psnr

RATIOS = (16, 32, 64, 128, 256)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/kodak")
    ap.add_argument("--model", type=Path)
    ap.add_argument("--limit", type=int)
    args = ap.parse_args()
    codec = Codec.load(args.model, device="cpu")
    step: dict[int, list[float]] = {r: [] for r in RATIOS}
    cut: dict[int, list[float]] = {r: [] for r in RATIOS}
    groups: dict[int, list[int]] = {r: [] for r in RATIOS}
    refused = dict.fromkeys(RATIOS, 0)
    for path in sorted(args.images.glob("*.png"))[: args.limit]:
        with Image.open(path) as im:
            img = im.convert("RGB")
        ref = np.asarray(img)
        base = codec.compress(img, ratio=8)
        for r in RATIOS:
            step[r].append(psnr(ref, np.asarray(codec.decompress(codec.compress(img, ratio=r)))))
            try:
                small = codec.truncate(base, ratio=r)
            except ValueError:          # not even the first group of the 8x file fits
                refused[r] += 1
                continue
            groups[r].append(len(bitstream.unpack(small).groups))
            cut[r].append(psnr(ref, np.asarray(codec.decompress(small))))
    print("| ratio | step size (compress) dB | truncation of the 8x file dB | groups kept (mean) |")
    print("|---|---|---|---|")
    for r in RATIOS:
        if refused[r]:
            print(f"| {r}x | {statistics.mean(step[r]):.2f} | refused for {refused[r]} of "
                  f"{len(step[r])} images | — |")
            continue
        print(f"| {r}x | {statistics.mean(step[r]):.2f} | {statistics.mean(cut[r]):.2f} | "
              f"{statistics.mean(groups[r]):.1f} |")


if __name__ == "__main__":
    main()
