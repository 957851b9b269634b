"""One GPU run, at most 9 minutes on an H200: the CUDA path, batched throughput, then training.

1. CUDA path: a few held-out photos are encoded on CUDA and on the CPU; every file is
   decoded by both codecs. The symbols each decoder's ``entropy.decode`` produced must be
   identical, and re-encoding them must give the file's own payloads (the symbols are the
   encoder's); the pixel PSNR between the CPU and CUDA decodes of one file is reported,
   with the latents' largest difference (TF32 on and off) and how many symbols the two
   encoders chose differently.
2. Throughput in Kodak-size (768x512) images per second: ``Codec.compress_batch`` (rate
   control included), ``Codec.decompress``, and the analysis / synthesis alone, batched.
3. Training from the shipped weights (``aic_worker.training.loop.train`` with ``init=``)
   on the packed crops for whatever the budget leaves, with the check crops' PSNR at
   four steps (all channels / the first quarter) and real files at three ratios before
   and after.

Everything lands in ``--out``: ``gpu.json`` (all figures, rewritten after each part, so a
run cut short still brings back what it measured), ``gpu.log``, ``gpu-trained.safetensors``
(weights, written every ``--checkpoint-minutes`` too) and the resumable checkpoint in
parts of at most 15 MiB (the device tool brings back 8 files of at most 16 MiB; join them
with ``cat gpu-trained.ckpt.safetensors.part-* > gpu-trained.ckpt.safetensors``).

Prepare here, once (``.gpu/`` is ignored by git; the work tree and ``.gpu`` together must
stay under 64 MiB — ``du -sh .gpu`` and ``git ls-files -co --exclude-standard``):

    python bench/pack_gpu_data.py        # -> .gpu/data/{train,check}, about 40 MiB
    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .gpu/wheels "constriction==0.5.0"

The GPU machine (Python 3.12 with torch, numpy, pillow, safetensors; no internet) lacks only
``constriction``; this script installs it from ``.gpu/wheels`` when the import fails. The
device tool's ``run``:

    command:   PYTHONUNBUFFERED=1 python3 bench/gpu.py --data .gpu/data --out $OUT
    carry:     [".gpu"]
    timeout_s: 600

It trains the shipped model's own shape (three residual blocks in the post-filter since
0.9.0): the decoder is where the codec's gains came from, and each block added on the CPU and
fine-tuned long enough gained (docs/model.md, runs 12, 16 and 18; runs 14 and 15, starved,
did not). ``--post-blocks N`` adds blocks at zero (the warm start decodes as the shipped
model does), but each block costs synthesis time in the decode and in the encoder's filter
decision and aiming: with three, the encode at 64x takes 0.89 s of its 1.0 s limit in a fast
hour (0.9.0, README), so a fourth would have to pay for itself there or the encoder find the
time elsewhere. The decoder learns from symbols rounded
as the encoder's RDOQ rounds them (``--quantiser rdoq``, the default): run 17 in
docs/model.md, trained that way with no new block, gained twice what run 16's block had.
The learned branches train in bfloat16 autocast (``--precision bf16``, the default; the block
transforms and the loss stay float32): on the 2-core CPU a step
took 0.17 s where float32 took 0.30 s.

Here, on the CPU, at toy scale (generated images, a few training steps; under 3 minutes):

    python bench/gpu.py --smoke --out /tmp/gpu-smoke

Without CUDA the "CUDA" side is a second CPU codec and gpu.json says so (``compared``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, features

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SITE = Path(tempfile.gettempdir()) / "aic-gpu-site"


def _ensure_constriction(wheels: Path) -> str:
    """Import constriction, installing it from carried wheels first if this Python lacks it."""
    try:
        importlib.import_module("constriction")
        return "installed"
    except ImportError:
        pass
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--find-links", str(wheels), "--target", str(SITE), "constriction"], check=True)
    sys.path.insert(0, str(SITE))
    importlib.invalidate_caches()
    importlib.import_module("constriction")
    return f"from {wheels}"


CONSTRICTION = _ensure_constriction(ROOT / ".gpu" / "wheels")

from aic_worker.codec import Codec, entropy, tiling  # noqa: E402
from aic_worker.codec.codec import default_model_path  # noqa: E402
from aic_worker.codec.quality import ms_ssim, psnr  # noqa: E402
from aic_worker.codec.weights import load_model_bytes, read_metadata  # noqa: E402
from aic_worker.training.dataset import find_images, load_downscaled  # noqa: E402
from aic_worker.training.loop import train, with_post_blocks  # noqa: E402

KODAK = (768, 512)
STEPS = (0.2, 1.0, 4.0, 12.0)          # the model card's check steps
LIMIT = 15 * 2**20                     # a file the device tool brings back (16 MiB, with room)


class Log:
    def __init__(self, path: Path) -> None:
        self.file = path.open("w")
        self.t0 = time.monotonic()

    def __call__(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f}s] {msg}"
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- data ----------------------------------------------------------------------------------
def smoke_data(root: Path, size: tuple[int, int]) -> Path:
    """Generated photo-like images (smooth shapes, edges, noise), stored the way the packer stores crops."""
    from pack_gpu_data import write_for_loader

    rng = np.random.default_rng(0)
    for sub, count, (w, h) in (("train", 6, (160, 120)), ("check", 2, size)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            yy, xx = np.mgrid[:h, :w].astype(np.float32)
            img = np.stack([128 + 70 * np.sin(xx / rng.uniform(5, 30) + c) * np.cos(yy / rng.uniform(5, 30))
                            for c in range(3)], axis=-1)
            img[(xx - w * rng.random()) ** 2 + (yy - h * rng.random()) ** 2 < (h / 4) ** 2] += 60
            img += rng.normal(0, 6, img.shape)
            write_for_loader(np.clip(img, 0, 255).astype(np.uint8), root / sub / f"{sub}-{i}.webp")
    return root


def check_images(data: Path, size: tuple[int, int]) -> list[np.ndarray]:
    """The held-out crops, as the loader sees them, cut to ``size`` (W, H)."""
    w, h = size
    out = []
    for p in find_images(data / "check"):
        rgb = load_downscaled(p, 1)
        if rgb is not None and rgb.shape[0] >= h and rgb.shape[1] >= w:
            out.append(np.array(rgb[:h, :w]))      # a writable copy
    if not out:
        raise SystemExit(f"no check images of {w}x{h} or more in {data / 'check'} (bench/pack_gpu_data.py)")
    return out


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in find_images(folder))


# -- 1. the CUDA path ------------------------------------------------------------------------
@contextlib.contextmanager
def symbol_spy() -> Iterator[list[np.ndarray]]:
    """Record what ``entropy.decode`` returns while a codec decodes (the symbols its path used)."""
    seen: list[np.ndarray] = []
    original = entropy.decode

    def spy(*args, **kwargs):
        q = original(*args, **kwargs)
        seen.append(np.array(q, copy=True))
        return q

    entropy.decode = spy
    try:
        yield seen
    finally:
        entropy.decode = original


def decoded_symbols(codec: Codec, data: bytes) -> tuple[np.ndarray, np.ndarray, str]:
    """(pixels, symbols, where the symbols came from) of ``codec`` decoding ``data``."""
    with symbol_spy() as seen:
        pixels = np.asarray(codec.decompress(data).convert("RGB"))
    if seen:
        return pixels, seen[-1], "the decoder's entropy.decode"
    f = codec.check(data)
    hd = f.header
    q = entropy.decode(f.groups, hd.latent_channels, hd.group_size, hd.latent_height, hd.latent_width,
                       version=hd.version)
    return pixels, q, "entropy.decode on the payloads (the decoder did not call it)"


def reencodes(codec: Codec, data: bytes, q: np.ndarray) -> bool:
    """Whether ``q`` encodes to the file's own payloads: the decoded symbols are the encoder's."""
    f = codec.check(data)
    again = entropy.encode(q, f.header.group_size, f.header.version)
    return len(again) >= len(f.groups) and all(a == b for a, b in zip(f.groups, again, strict=False))


def cuda_path(cpu: Codec, dev: Codec, images: list[np.ndarray], ratios: tuple[int, ...], log: Log) -> dict:
    compared = "cuda-vs-cpu"
    if dev.device.type != "cuda":
        compared = "cpu-vs-cpu (no CUDA here: both codecs on the CPU)"
    cases, identical, reencoded, sources = [], True, True, set()
    for n, rgb in enumerate(images):
        img = Image.fromarray(rgb)
        for ratio in ratios:
            files = {"cuda": dev.compress(img, ratio), "cpu": cpu.compress(img, ratio)}
            symbols: dict[str, np.ndarray] = {}
            for enc, data in files.items():
                decoded = {}
                for dec, codec in (("cpu", cpu), ("cuda", dev)):
                    pixels, q, source = decoded_symbols(codec, data)
                    sources.add(source)
                    decoded[dec] = (pixels, q)
                same = bool(np.array_equal(decoded["cpu"][1], decoded["cuda"][1]))
                again = reencodes(cpu, data, decoded["cpu"][1])
                identical &= same
                reencoded &= again
                symbols[enc] = decoded["cpu"][1]
                (pc, _), (pg, _) = decoded["cpu"], decoded["cuda"]
                case = {
                    "image": n, "ratio": ratio, "encoded_on": enc, "bytes": len(data),
                    "symbols_identical": same, "reencodes_to_file": again,
                    "psnr_cpu_decode_db": round(psnr(rgb, pc), 3),
                    "psnr_cuda_decode_db": round(psnr(rgb, pg), 3),
                    "psnr_cpu_vs_cuda_decode_db": _db(psnr(pc, pg)),
                    "max_pixel_diff_cpu_vs_cuda": int(np.abs(pc.astype(np.int16) - pg).max()),
                }
                cases.append(case)
                log(f"  image {n} {ratio}x encoded on {enc}: {len(data)} B, symbols identical {same}, "
                    f"re-encodes {again}, decodes {case['psnr_cpu_decode_db']} / "
                    f"{case['psnr_cuda_decode_db']} dB, "
                    f"CPU vs CUDA decode {case['psnr_cpu_vs_cuda_decode_db']} dB")
            a, b = symbols["cuda"], symbols["cpu"]
            cases.append({"image": n, "ratio": ratio, "files_identical": files["cuda"] == files["cpu"],
                          "symbols_differing_between_encoders": (
                              float(np.mean(a != b)) if a.shape == b.shape else "different shapes")})
    between = [c["psnr_cpu_vs_cuda_decode_db"] for c in cases if "psnr_cpu_vs_cuda_decode_db" in c]
    finite = [v for v in between if isinstance(v, float)]
    return {
        "compared": compared, "ratios": list(ratios), "images": len(images),
        "symbols_identical": identical, "reencode_identical": reencoded, "symbols_from": sorted(sources),
        "min_psnr_cpu_vs_cuda_decode_db": min(finite) if finite else "inf (identical pixels)",
        "latent": latent_difference(cpu, dev, images[0]),
        "cases": cases,
    }


def _db(value: float) -> float | str:
    return "inf" if math.isinf(value) else round(value, 3)


def latent_difference(cpu: Codec, dev: Codec, rgb: np.ndarray) -> dict:
    """Largest |y_cpu − y_device| of one image's latent, with the device's TF32 convolutions on and off."""
    y = cpu.latent(rgb)
    out = {"max_abs_latent": float(np.abs(y).max())}
    flag = torch.backends.cudnn.allow_tf32
    try:
        for tf32 in (True, False):
            torch.backends.cudnn.allow_tf32 = tf32
            out[f"max_abs_diff_tf32_{'on' if tf32 else 'off'}"] = float(np.abs(dev.latent(rgb) - y).max())
    finally:
        torch.backends.cudnn.allow_tf32 = flag
    return out


# -- 2. throughput ---------------------------------------------------------------------------
def rate(fn: Callable[[], int], device: torch.device, seconds: float, warmup: int = 1) -> float:
    """Items per second of ``fn`` (which returns how many it did), repeated for about ``seconds``."""
    for _ in range(warmup):
        fn()
    _sync(device)
    done, t0 = 0, time.perf_counter()
    while True:
        done += fn()
        _sync(device)
        if (elapsed := time.perf_counter() - t0) >= seconds:
            return done / elapsed


def throughput(
    dev: Codec, images: list[np.ndarray], encode_n: int, batch: int, seconds: float, log: Log
) -> dict:
    device = dev.device
    pil = [Image.fromarray(images[i % len(images)]) for i in range(encode_n)]
    t0 = time.perf_counter()
    files = dev.compress_batch(pil, [16.0] * encode_n)
    encode_s = time.perf_counter() - t0
    bad = [f for f in files if isinstance(f, Exception)]
    if bad:
        raise bad[0]
    t0 = time.perf_counter()
    for data in files:
        dev.decompress(data)
    decode_s = time.perf_counter() - t0
    h, w = images[0].shape[:2]
    pixels = [torch.from_numpy(images[i % len(images)]).permute(2, 0, 1)[None].contiguous().to(device)
              for i in range(batch)]
    out = {
        "image_size": [w, h], "ratio": 16, "encode_images": encode_n,
        "encode_images_per_s": round(encode_n / encode_s, 3),
        "decode_images_per_s": round(encode_n / decode_s, 3),
        "analysis_batch": batch,
    }
    log(f"  compress_batch {out['encode_images_per_s']} images/s, "
        f"decompress {out['decode_images_per_s']} images/s")
    model = dev.model
    with torch.inference_mode():
        out["analysis_images_per_s"] = round(rate(
            lambda: len(tiling.analyse_batch(model, pixels, batch)), device, seconds), 2)
        y = tiling.analyse_batch(model, pixels[:1], 1)[0]
        step = 1.0
        q = torch.round(y / step)
        yb = (q * step).expand(batch, -1, -1, -1).contiguous()
        if device.type == "cpu":
            yb = yb.contiguous(memory_format=torch.channels_last)
        out["synthesis_images_per_s"] = round(rate(lambda: model.g_s(yb, step).shape[0], device, seconds), 2)
        out["synthesis_block_only_images_per_s"] = round(rate(
            lambda: model.g_s(yb, step, False).shape[0], device, seconds), 2)
    log(f"  analysis {out['analysis_images_per_s']} images/s, "
        f"synthesis {out['synthesis_images_per_s']} images/s (batch {batch})")
    return out


# -- 3. training ----------------------------------------------------------------------------
@torch.inference_mode()
def latent_check(weights: Path, images: list[np.ndarray], device: torch.device) -> dict:
    """Mean PSNR of the check crops through g_a → round(·/Δ) → keep channels → g_s, at each Δ
    (the model card's check)."""
    model, model_id = load_model_bytes(weights.read_bytes())
    model = model.to(device).eval()
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(device).float().div_(255)
    y = model.g_a(x)
    m = model.cfg.latent_channels
    out: dict = {"model_id": model_id, "psnr_db": {}}
    for step in STEPS:
        q = torch.round(y / step)
        row = []
        for keep in (m, m // 4):
            kept = q.clone()
            kept[:, keep:] = 0
            x_hat = model.g_s(kept * step, step).clamp_(0, 1).mul_(255).round_()
            mse = ((x_hat - x * 255) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
            row.append(round(float((10 * torch.log10(255**2 / mse)).mean()), 3))
        out["psnr_db"][f"step {step:g}"] = {"all channels": row[0], "first quarter": row[1]}
    return out


def codec_check(weights: Path, images: list[np.ndarray], ratios: tuple[int, ...], device: str) -> dict:
    """Real files of the check crops at each ratio: mean bytes, PSNR and MS-SSIM."""
    codec = Codec.load(weights, device=device)
    out = {}
    for ratio in ratios:
        sizes, ps, ss = [], [], []
        for rgb in images:
            data = codec.compress(Image.fromarray(rgb), ratio)
            back = np.asarray(codec.decompress(data).convert("RGB"))
            sizes.append(len(data))
            ps.append(psnr(rgb, back))
            ss.append(ms_ssim(rgb, back))
        out[f"{ratio}x"] = {"bytes": round(float(np.mean(sizes)), 1), "psnr_db": round(float(np.mean(ps)), 3),
                            "ms_ssim": round(float(np.mean(ss)), 5)}
    return out


def split_file(path: Path, limit: int = LIMIT) -> list[str]:
    """Cut a file bigger than ``limit`` into ``.part-N`` files (then removed); small ones stay whole."""
    if path.stat().st_size <= limit:
        return [path.name]
    parts = []
    with path.open("rb") as f:
        while chunk := f.read(limit):
            part = path.with_name(f"{path.name}.part-{len(parts)}")
            part.write_bytes(chunk)
            parts.append(part.name)
    path.unlink()
    return parts


# -- the run ----------------------------------------------------------------------------------
def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / ".gpu" / "data", help="packed: train/, check/")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--smoke", action="store_true", help="CPU, toy scale, generated images, a few steps")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    ap.add_argument("--minutes", type=float, default=None,
                    help="wall budget of the whole run, training gets what the checks leave (8.3; smoke 2)")
    ap.add_argument("--train-minutes", type=float, default=None, help="cap on training (smoke: 0.1)")
    ap.add_argument("--weights", type=Path, default=default_model_path(), help="the warm start")
    ap.add_argument("--crop", type=int, default=None, help="training crop (default 256; smoke 32)")
    ap.add_argument("--batch", type=int, default=None, help="training batch (default 64; smoke 4)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--ms-ssim-weight", type=float, default=0.0)
    ap.add_argument("--quantiser", choices=("rdoq", "round"), default="rdoq",
                    help="symbols the decoder learns from (aic-admin train --quantiser)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="bf16",
                    help="the synthesis' learned branches in training (aic-admin train --precision)")
    ap.add_argument("--train-analysis", action="store_true", help="train the analysis too (R + λD)")
    ap.add_argument("--post-blocks", type=int, default=None,
                    help="residual blocks in the post-filter, those the warm start lacks added at zero")
    ap.add_argument("--checkpoint-minutes", type=float, default=2.0)
    ap.add_argument("--throughput-batch", type=int, default=None, help="images a pass (64; smoke 4)")
    ap.add_argument("--encode-images", type=int, default=None, help="for compress_batch (16; smoke 2)")
    args = ap.parse_args(argv)
    smoke = args.smoke
    args.device = args.device or ("cpu" if smoke else "cuda")
    args.minutes = args.minutes if args.minutes is not None else (2.0 if smoke else 8.3)
    args.train_minutes = args.train_minutes if args.train_minutes is not None else (0.1 if smoke else None)
    args.crop = args.crop or (32 if smoke else 256)
    args.batch = args.batch or (4 if smoke else 64)
    args.throughput_batch = args.throughput_batch or (4 if smoke else 64)
    args.encode_images = args.encode_images or (2 if smoke else 16)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    deadline = time.monotonic() + args.minutes * 60
    started = time.monotonic()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu.log")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        log("no CUDA device here: use --smoke (or --device cpu)")
        return 2
    if not features.check("webp"):
        log("this Pillow cannot read WebP, the packed data's format")
        return 2
    report: dict = {
        "script": "bench/gpu.py", "argv": sys.argv[1:], "smoke": args.smoke, "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "constriction": CONSTRICTION, "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32, "shipped_weights": str(args.weights), "errors": {},
    }

    def save() -> None:
        report["wall_s"] = round(time.monotonic() - started, 1)
        tmp = out / "gpu.json.tmp"
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(out / "gpu.json")

    def phase(name: str, fn: Callable[[], object]) -> None:
        log(f"{name} ...")
        t0 = time.monotonic()
        try:
            report[name] = fn()
        except Exception as exc:  # one part failing must not lose the others' figures
            report["errors"][name] = f"{type(exc).__name__}: {exc}"
            log(f"{name} FAILED: {report['errors'][name]}")
        report.setdefault("phase_seconds", {})[name] = round(time.monotonic() - t0, 1)
        save()

    log(f"device {report['device_name']} ({device}), torch {torch.__version__}, constriction {CONSTRICTION}")
    with contextlib.ExitStack() as stack:
        data = args.data
        size = KODAK
        if args.smoke:
            size = (128, 96)
            data = smoke_data(Path(stack.enter_context(tempfile.TemporaryDirectory())), size)
        images = check_images(data, size)
        cpu, dev = Codec.load(args.weights, device="cpu"), Codec.load(args.weights, device=str(device))
        report["model_id"] = cpu.model_id
        ratios = (16, 128) if args.smoke else (8, 32, 128)
        phase("cuda_path", lambda: cuda_path(cpu, dev, images[:1] if args.smoke else images, (8, 128), log))
        phase("throughput", lambda: throughput(dev, images, args.encode_images, args.throughput_batch,
                                               0.5 if args.smoke else 4.0, log))
        t0 = time.monotonic()
        phase("check_before", lambda: {"latent": latent_check(args.weights, images, device),
                                       "codec": codec_check(args.weights, images, ratios, str(device))})
        check_s = time.monotonic() - t0
        t0 = time.monotonic()
        for p in find_images(data / "check"):
            load_downscaled(p, 1)
        per_byte = (time.monotonic() - t0) / max(1, folder_bytes(data / "check"))
        load_s = 1.5 * per_byte * folder_bytes(data / "train") + 2    # train() loads before its clock starts
        reserve = check_s * 1.2 + load_s + 15
        minutes = (deadline - time.monotonic() - reserve) / 60
        if args.train_minutes is not None:
            minutes = min(minutes, args.train_minutes)
        if args.smoke:   # the toy run proves every part runs; on a busy CPU the checks can eat its 2 minutes
            minutes = args.train_minutes
        weights_out = out / "gpu-trained.safetensors"
        if minutes < 0.05:
            report["errors"]["training"] = f"no time left to train ({minutes * 60:.0f} s)"
            save()
        else:
            phase("training", lambda: training(args, data, weights_out, minutes, device, log))
            if weights_out.exists():
                phase("check_after", lambda: {"latent": latent_check(weights_out, images, device),
                                              "codec": codec_check(weights_out, images, ratios, str(device))})
    ckpt = weights_out.with_suffix(".ckpt.safetensors")
    if ckpt.exists():
        report.setdefault("training", {})["checkpoint_files"] = split_file(ckpt)
    report["files"] = sorted(p.name for p in out.iterdir() if p.is_file())
    save()
    failed = bool(report["errors"]) or not report.get("cuda_path", {}).get("symbols_identical", False)
    verdict = "FAILED: " + json.dumps(report["errors"]) if failed else "all parts ran"
    log(f"done in {report['wall_s']} s; {verdict}")
    return 1 if failed else 0


def training(args: argparse.Namespace, data: Path, weights_out: Path, minutes: float,
             device: torch.device, log: Log) -> dict:
    curve: list[list[float]] = []
    t_first: list[float] = []
    every = 5 if args.smoke else 100

    def on_step(step: int, loss: float, bpp: float, mse: float) -> None:
        if not t_first:
            t_first.append(time.monotonic())
        if step % every == 0 or step == 1:
            curve.append([step, round(loss, 4), round(bpp, 4), round(mse, 7)])
        if step % (every * 10) == 0:
            log(f"  step {step}: loss {loss:.4f} mse {mse:.6f}")

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    log(f"  training {minutes:.2f} min, crop {args.crop}, batch {args.batch}, lr {args.lr:g}, "
        f"ms-ssim weight {args.ms_ssim_weight:g}, quantiser {args.quantiser}, precision {args.precision}, "
        f"analysis {'trained' if args.train_analysis else 'frozen'}, "
        f"post-filter blocks {'as the warm start' if args.post_blocks is None else args.post_blocks}")
    t0 = time.monotonic()
    train(data / "train", minutes, weights_out, init=args.weights, crop=args.crop, batch=args.batch,
          lr=args.lr, checkpoint_minutes=args.checkpoint_minutes, train_analysis=args.train_analysis,
          config=with_post_blocks(args.weights, args.post_blocks), report=on_step, device=device,
          ms_ssim_weight=args.ms_ssim_weight, quantiser=args.quantiser, bf16=args.precision == "bf16")
    total = time.monotonic() - t0
    steps = int(read_metadata(weights_out.read_bytes())["steps"])
    loop_s = time.monotonic() - t_first[0] if t_first else total
    return {
        "minutes": round(minutes, 3), "wall_s": round(total, 1), "load_s": round(total - loop_s, 1),
        "steps": steps, "steps_per_s": round(steps / max(loop_s, 1e-9), 2),
        "crops_per_s": round(steps * args.batch / max(loop_s, 1e-9), 1),
        "crop": args.crop, "batch": args.batch, "lr": args.lr, "ms_ssim_weight": args.ms_ssim_weight,
        "quantiser": None if args.train_analysis else args.quantiser,   # R + λD rounds to the nearest
        "precision": args.precision, "train_analysis": args.train_analysis, "post_blocks": args.post_blocks,
        "training_images": len(find_images(data / "train")),
        "weights": weights_out.name, "model_id": load_model_bytes(weights_out.read_bytes())[1],
        "curve": curve,
    }


if __name__ == "__main__":
    sys.exit(main())
