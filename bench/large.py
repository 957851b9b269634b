"""Peak memory and time for one large image (default 6000x4000) through compress and decompress.

The image is synthetic (smooth gradients, texture and edges) so no data is needed.

    python bench/large.py [--width 6000 --height 4000 --ratio 32]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from PIL import Image

from aic_worker.codec import Codec
from aic_worker.codec.quality import psnr


def synthetic(w: int, h: int) -> Image.Image:
    """Built a band of rows at a time, so that making it adds little to the peak RSS measured."""
    rng = np.random.default_rng(0)
    out = np.empty((h, w, 3), dtype=np.uint8)
    for y0 in range(0, h, 256):
        yy, xx = np.mgrid[y0 : min(h, y0 + 256), 0:w].astype(np.float32)
        img = np.stack([xx / w * 200, yy / h * 200, (np.sin(xx / 37) + np.cos(yy / 23)) * 50 + 100], axis=-1)
        img += rng.standard_normal(img.shape, dtype=np.float32) * 8
        img[(xx // 500 + yy // 500) % 2 == 0] += 30
        out[y0 : y0 + 256] = np.clip(img, 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--ratio", type=float, default=32)
    ap.add_argument("--model")
    args = ap.parse_args()
    codec = Codec.load(args.model, device="cpu")
    img = synthetic(args.width, args.height)
    t0 = time.perf_counter()
    data = codec.compress(img, ratio=args.ratio)
    t1 = time.perf_counter()
    out = codec.decompress(data)
    t2 = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.width}x{args.height} at {args.ratio:g}x: {len(data)} bytes, "
          f"PSNR {psnr(np.asarray(img), np.asarray(out)):.2f} dB, encode {t1 - t0:.1f} s, "
          f"decode {t2 - t1:.1f} s, peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
