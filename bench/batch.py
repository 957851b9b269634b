"""What batching waiting jobs gains: jobs per second through the real queue, AIC_BATCH 1 against N.

Each batch size gets the same path as bench/pipeline.py (private redis-server, SQLite
catalog, one warmed-up `aic-worker` process, prefork, concurrency 1) and the same images,
all recorded in the catalog before any is published, so that they wait together as after
a big drop into a watched folder. The codec's part alone is measured too: `compress` image
by image against `compress_batch` in groups of N, the same images in the same run (only the
analysis transform is batched; rate control, entropy coding and the worker's verifying
decode stay per image, which bounds the gain on a CPU).

    python bench/batch.py [--images ../shared/data/kodak] [--limit N] [--batch 4] [--ratio 32] [--model W]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from pipeline import KODAK, pipeline_run  # bench/pipeline.py: run as a script, bench/ is on sys.path

from aic_worker.codec import Codec
from aic_worker.model_choice import SHIPPED_MODEL


def _open(path: Path) -> Image.Image:
    image = Image.open(io.BytesIO(path.read_bytes()))
    image.load()
    return image


def codec_seconds(codec: Codec, images: list[Image.Image], ratio: float, batch: int) -> float:
    """Seconds to encode all images, `batch` at a time through compress_batch (1: compress)."""
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        group = images[i : i + batch]
        if batch == 1:
            codec.compress(group[0], ratio)
            continue
        for result in codec.compress_batch(group, [ratio] * len(group)):
            if isinstance(result, Exception):
                raise result
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--limit", type=int, help="use only the first N images")
    parser.add_argument("--batch", type=int, default=4, help="the batch size compared with 1 (default 4)")
    parser.add_argument("--ratio", type=float, default=32)
    parser.add_argument("--model", type=Path, help="weights (default: AIC_MODEL, else the shipped model)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = parser.parse_args()
    if args.batch < 2:
        raise SystemExit("--batch must be at least 2 (it is compared with 1)")
    model = args.model or Path(os.environ.get("AIC_MODEL") or SHIPPED_MODEL)
    paths = sorted(args.images.glob("*.png"))[: args.limit]
    if not paths:
        raise SystemExit(f"no PNG images in {args.images}")
    n, sizes = len(paths), (1, args.batch)

    codec = Codec.load(model, "cpu")
    images = [_open(path) for path in paths]
    codec_seconds(codec, images[:1], args.ratio, 1)  # warm-up
    encode = {b: codec_seconds(codec, images, args.ratio, b) for b in sizes}
    queue = {}
    for b in sizes:
        with tempfile.TemporaryDirectory(prefix="aic-bench-batch-") as tmp:
            queue[b] = pipeline_run(paths, args.ratio, model, Path(tmp), batch=b, burst=True)

    result = {
        "images": n, "ratio": args.ratio, "batch": args.batch, "model": codec.model_id[:16],
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "codec_images_per_s": {str(b): n / encode[b] for b in sizes},
        "queue_jobs_per_s": {str(b): n / queue[b] for b in sizes},
        "codec_gain": encode[1] / encode[args.batch], "queue_gain": queue[1] / queue[args.batch],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch.json").write_text(json.dumps(result, indent=2))
    print(f"{n} images at ratio {args.ratio:g}, {result['torch_threads']} torch threads, CPU {result['cpu']}")
    print(f"{'':32}{'batch 1':>12}{f'batch {args.batch}':>12}{'gain':>8}")
    print(f"{'compress alone (images/s)':32}{n / encode[1]:12.3f}{n / encode[args.batch]:12.3f}"
          f"{result['codec_gain']:8.3f}")
    print(f"{'through the queue (jobs/s)':32}{n / queue[1]:12.3f}{n / queue[args.batch]:12.3f}"
          f"{result['queue_gain']:8.3f}")


if __name__ == "__main__":
    main()
