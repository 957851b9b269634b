"""Pack a training subset for ``bench/gpu.py`` into the ignored folder ``.gpu/data``.

The GPU machine has no ``../shared``: only the work tree and up to 64 MiB of carried
paths travel, so this writes a budgeted subset of the training photos (never Kodak):

    .gpu/data/train/*.webp   random crops (at most --max-side square) of the training photos
    .gpu/data/check/*.webp   a few held-out 768x512 crops: the CUDA-path check, throughput, before/after
    .gpu/data/MANIFEST.json  what came from where, sizes, seed

Each photo is first downscaled exactly as ``aic_worker.training.dataset.load_downscaled``
does it (≥2x, box filter: the photos are JPEGs). The crop is then stored 2x nearest-
neighbour upscaled as lossless WebP, so that the loader's own 2x box filter gives back
exactly the pixels it would have trained on: ``CropSampler.from_folder`` reads the packed
folder unchanged, and lossless WebP of the doubled pixels is about 0.4 bytes per pixel
byte (smaller than PNG of the crop alone).

    python bench/pack_gpu_data.py [--train ../shared/data/train] [--out .gpu/data] [--budget-mib 40]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aic_worker.training.dataset import find_images, load_downscaled  # noqa: E402

CHECK_SIZE = (768, 512)   # Kodak's size (landscape), for the CUDA check and throughput


def stored_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8, at most 1200 px a side → lossless WebP of it 2x nearest-neighbour upscaled."""
    if max(rgb.shape[:2]) > 1200:
        raise ValueError("stored images stay within 1200 px a side (then the loader halves them exactly)")
    buf = io.BytesIO()
    Image.fromarray(rgb.repeat(2, axis=0).repeat(2, axis=1)).save(buf, format="WEBP", lossless=True)
    return buf.getvalue()


def write_for_loader(rgb: np.ndarray, path: Path) -> int:
    """Write ``rgb`` where ``load_downscaled`` reads it back exactly; return the file's bytes."""
    data = stored_bytes(rgb)
    path.write_bytes(data)
    return len(data)


def random_crop(rgb: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    ch, cw = min(h, side), min(w, side)
    y, x = rng.integers(h - ch + 1), rng.integers(w - cw + 1)
    return np.ascontiguousarray(rgb[y : y + ch, x : x + cw])


def centre_crop(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """A centred ``size`` (W, H) crop, or None if the image is smaller."""
    (w, h), (iw, ih) = size, (rgb.shape[1], rgb.shape[0])
    if iw < w or ih < h:
        return None
    y, x = (ih - h) // 2, (iw - w) // 2
    return np.ascontiguousarray(rgb[y : y + h, x : x + w])


def pack(train: Path, out: Path, budget: int, min_side: int, max_side: int, checks: int, seed: int) -> dict:
    if any("kodak" in part.lower() for part in train.resolve().parts):
        raise SystemExit(f"{train}: Kodak is never used for training")
    rng = np.random.default_rng(seed)
    paths = [p for p in find_images(train) if "kodak" not in str(p).lower()]
    rng.shuffle(paths)
    if out.exists():
        shutil.rmtree(out)
    (out / "train").mkdir(parents=True)
    (out / "check").mkdir()
    manifest: dict = {"source": str(train), "seed": seed, "min_side": min_side, "max_side": max_side,
                      "stored_as": "downscaled as the loader does, then 2x nearest-neighbour, lossless WebP",
                      "check": [], "train": [], "skipped_small": 0, "skipped_budget": 0}
    total = 0
    for path in paths:
        rgb = load_downscaled(path, min_side)
        if rgb is None:
            manifest["skipped_small"] += 1
            continue
        name = f"{path.parent.name}-{path.stem}.webp"
        source = str(path.relative_to(train))
        if len(manifest["check"]) < checks and (crop := centre_crop(rgb, CHECK_SIZE)) is not None:
            n = write_for_loader(crop, out / "check" / name)
            manifest["check"].append({"file": name, "source": source, "size": list(CHECK_SIZE), "bytes": n})
            total += n
            continue
        crop = random_crop(rgb, max_side, rng)
        data = stored_bytes(crop)
        if total + len(data) > budget:
            manifest["skipped_budget"] += 1
            continue
        (out / "train" / name).write_bytes(data)
        total += len(data)
        manifest["train"].append({"file": name, "source": source, "size": [crop.shape[1], crop.shape[0]],
                                  "bytes": len(data)})
        print(f"{len(manifest['train']):4d} {name} {crop.shape[1]}x{crop.shape[0]} "
              f"{len(data) / 1e6:.2f} MB (total {total / 2**20:.1f} MiB)", flush=True)
    manifest["bytes"] = total
    manifest["pixels_train"] = sum(e["size"][0] * e["size"][1] for e in manifest["train"])
    # The loader must give back exactly what was stored (2x box of 2x nearest is exact).
    for entry in manifest["train"][:3]:
        back = load_downscaled(out / "train" / entry["file"], 1)
        assert back is not None and list(back.shape[1::-1]) == entry["size"], entry
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    ap.add_argument("--out", type=Path, default=ROOT / ".gpu" / "data")
    ap.add_argument("--budget-mib", type=float, default=40.0,
                    help="all bytes written (the work tree plus carried paths must stay under 64 MiB)")
    ap.add_argument("--min-side", type=int, default=256,
                    help="skip photos whose downscaled short side is less (gpu.py's training crop)")
    ap.add_argument("--max-side", type=int, default=768,
                    help="crop each downscaled photo to at most this square")
    ap.add_argument("--checks", type=int, default=3, help="held-out 768x512 crops for the checks")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    m = pack(args.train, args.out, int(args.budget_mib * 2**20), args.min_side, args.max_side, args.checks,
             args.seed)
    print(f"{len(m['train'])} training crops ({m['pixels_train'] / 1e6:.1f} Mpx), "
          f"{len(m['check'])} check crops, {m['bytes'] / 2**20:.1f} MiB in {args.out}; "
          f"{m['skipped_small']} photos too small, "
          f"{m['skipped_budget']} over budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
