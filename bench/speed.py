"""AIC's encode and decode time per ratio: median wall seconds per image.

``bench/rd.py`` times AIC too, but it spends most of its run fitting the classic codecs;
this times AIC alone, so a quiet-machine figure takes a minute. ``--quantisers`` times
the encoder with each quantiser (``rdoq``, the one it uses; ``plain``, the fixed dead
zone), in turn per image, so both see the same machine load.

    python bench/speed.py --limit 6 --quantisers plain rdoq
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

from aic_worker.codec import Codec

RATIOS = (8, 16, 32, 64, 128, 256)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/kodak")
    ap.add_argument("--limit", type=int, help="only the first N images")
    ap.add_argument("--quantisers", choices=["plain", "rdoq"], nargs="+", default=["rdoq"])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--target-from", type=float, metavar="RATIO",
                    help="Codec.target_from: the ratio from which symbols aim at the synthesis")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    codec = Codec.load(args.model, device="cpu")
    if args.target_from is not None:
        codec.target_from = args.target_from
    images = [Image.open(p).convert("RGB") for p in sorted(args.images.glob("*.png"))[: args.limit]]
    print(f"{len(images)} images of {args.images.name}, model {codec.model_id[:16]}…, "
          f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"symbols aimed at the synthesis from {codec.target_from:g}x")
    print("| ratio | " + " | ".join(f"encode s, {q}" for q in args.quantisers) + " | decode s |")
    print("|---" * (len(args.quantisers) + 2) + "|")
    for ratio in RATIOS:
        encode: dict[str, list[float]] = {q: [] for q in args.quantisers}
        decode = []
        for image in images:
            for quantiser in args.quantisers:
                codec.rdoq = quantiser == "rdoq"
                start = time.perf_counter()
                data = codec.compress(image, ratio)
                encode[quantiser].append(time.perf_counter() - start)
            start = time.perf_counter()
            codec.decompress(data)
            decode.append(time.perf_counter() - start)
        cells = " | ".join(f"{statistics.median(encode[q]):.3f}" for q in args.quantisers)
        print(f"| {ratio}x | {cells} | {statistics.median(decode):.3f} |", flush=True)


if __name__ == "__main__":
    main()
