"""What format versions 2 and 3 and rate control's trade each gain, in PSNR at equal file size.

For each image and ratio R the budget is W·H·3/R bytes, as in ``bench/rd.py``. The
codec's latent goes through rate control four ways: version-1 payloads (side
information as bytes, no prediction), version-2 payloads (coded side information, row
prediction), version 2 with the trade of trailing groups for a finer step, and version 3
(integer context features) with the trade (what ``Codec.compress`` does). Each result is
decoded with the learned synthesis on and measured against the original; the table gives
mean PSNR and the gains.

Images: a folder (default: Kodak), or ``--train-sample N``: N photos drawn with a fixed
seed from the training set, downscaled at least 2x like training crops and cut to at
most 768x512 — where design choices are checked (never tuned on Kodak).

    python bench/coding_gains.py [--images DIR | --train-sample 16] [--ratios 8 32 256]
"""

from __future__ import annotations

import argparse
import platform
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aic_worker.codec import Codec, bitstream, rate_control, tiling
from aic_worker.codec.quality import psnr
from aic_worker.training.dataset import find_images

SHARED = Path(__file__).resolve().parents[2] / "shared/data"
VARIANTS = {"v1": {"version": 1, "trade": False}, "v2": {"version": 2, "trade": False},
            "v2 + trade": {"version": 2, "trade": True}, "v3 + trade": {"version": 3, "trade": True}}


def train_sample(n: int, seed: int = 7) -> list[np.ndarray]:
    """``n`` training photos (≥ 200 px a side after the ≥2x downscale), at most 768x512."""
    files = find_images(SHARED / "train")
    random.Random(seed).shuffle(files)
    out = []
    for path in files:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im = im.reduce(max(2, round(max(im.size) / 768)))
        if min(im.size) >= 200:
            out.append(np.asarray(im)[:512, :768])
        if len(out) == n:
            break
    return out


def folder(path: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(path.glob("*.png"))]


def decoded_psnr(codec: Codec, rgb: np.ndarray, y: np.ndarray, ratio: float, options: dict) -> float:
    h, w = rgb.shape[:2]
    header = bitstream.AicHeader(
        model_id=bytes.fromhex(codec.model_id), width=w, height=h, mode="RGB", target_ratio=ratio,
        achieved_ratio=0.0, step_code=0, latent_channels=y.shape[0], group_size=codec.group_size,
        latent_height=y.shape[1], latent_width=y.shape[2],
    )

    def sizer(payloads: list[bytes]) -> int:
        return bitstream.file_overhead(bitstream.AicFile(header, {}, payloads)) + sum(map(len, payloads))

    result = rate_control.fit(y, int(w * h * 3 / ratio), codec.group_size, sizer, **options)
    step = rate_control.step_of(result.code)
    out = tiling.synthesise(codec.model, result.q, step, True, codec.device)[:h, :w]
    return psnr(rgb, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=SHARED / "kodak")
    ap.add_argument("--train-sample", type=int, metavar="N", help="N training photos instead of --images")
    ap.add_argument("--ratios", type=float, nargs="+", default=[8, 16, 32, 64, 128, 256])
    ap.add_argument("--model", type=Path)
    args = ap.parse_args()
    codec = Codec.load(args.model, device="cpu")
    images = train_sample(args.train_sample) if args.train_sample else folder(args.images)
    source = "training photos" if args.train_sample else f"images of {args.images}"
    machine = f"{platform.machine()}, torch {torch.__version__}"
    print(f"{len(images)} {source}, model {codec.model_id[:16]}…, {machine}")
    print("| ratio | " + " | ".join(VARIANTS) + " | v2 − v1 | trade | v3 − v2 |")
    print("|---" * (len(VARIANTS) + 4) + "|")
    for ratio in args.ratios:
        means = {}
        for name, options in VARIANTS.items():
            scores = [decoded_psnr(codec, rgb, codec.latent(rgb), ratio, options) for rgb in images]
            means[name] = float(np.mean(scores))
        v1, v2, traded, v3 = means.values()
        cells = " | ".join(f"{m:.2f}" for m in means.values())
        gains = f"{v2 - v1:+.2f} dB | {traded - v2:+.2f} dB | {v3 - traded:+.2f} dB"
        print(f"| {ratio:g}x | {cells} | {gains} |", flush=True)


if __name__ == "__main__":
    main()
