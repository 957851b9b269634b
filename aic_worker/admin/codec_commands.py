"""``aic-admin compress | decompress | info | train``: the codec from the shell.

``Codec`` (and with it torch) is imported inside the commands that encode or decode, so
building the parser, ``--help`` and the catalog commands start without it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from aic_worker.admin import output
from aic_worker.codec import AicFormatError, bitstream, rate_control, step_profile, validation
from aic_worker.codec.image_modes import FILE_FORMATS, for_file
from aic_worker.model_choice import shipped_weights

if TYPE_CHECKING:
    from aic_worker.codec import Codec

SUFFIX_FORMATS = {".png": "png", ".tif": "tiff", ".tiff": "tiff"}  # of a file named by -o


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="compress images into .aic files at a ratio")
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN")
    p.add_argument("--ratio", type=float, required=True, help="raw RGB bytes / file bytes, e.g. 64")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="a file for one input, a folder for several")
    p.add_argument("--model", type=Path, help="weights file (default: the shipped model)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    p.set_defaults(func=compress)

    p = sub.add_parser("decompress", help="decode .aic files to PNG (TIFF for modes PNG can't hold)")
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN.aic")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="a file for one input, a folder for several (a.jpg.aic -> DIR/a.png)")
    p.add_argument("--format", choices=sorted(FILE_FORMATS),
                   help="image format (default: the -o file's suffix, else PNG, or TIFF for CMYK, YCbCr, I)")
    p.add_argument("--model", type=Path, help="weights file (default: the shipped model the file names)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=decompress)

    p = sub.add_parser("info", help="show what a .aic file holds (no decoding)")
    p.add_argument("file", type=Path, metavar="FILE.aic")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=info)

    p = sub.add_parser("train", help="train (or go on training) the codec's model")
    p.add_argument("--data", type=Path, required=True, help="folder of training photos")
    p.add_argument("--minutes", type=float, required=True, help="wall-clock budget")
    p.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    p.add_argument("--resume", type=Path, help="checkpoint to continue from")
    p.add_argument("--init", type=Path, help="weights to warm-start from (fresh optimizer)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--post-blocks", type=int,
                   help="residual blocks in the post-filter (with --init: added at zero)")
    p.add_argument("--ms-ssim-weight", type=float, default=0.0,
                   help="weight of the MS-SSIM error (dB) beside the PSNR in the objective")
    p.add_argument("--quantiser", choices=("rdoq", "round"), default="rdoq",
                   help="symbols the decoder learns from: rounded as RDOQ rounds (default) or to nearest")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="the synthesis' learned branches in float32 (default) or bfloat16 autocast")
    p.add_argument("--step-min", type=_step_min, default=0.1,
                   help="finest quantisation step trained on (log-uniform up to 16; default 0.1)")
    p.set_defaults(func=train)


def _step_min(text: str) -> float:
    """--step-min: a step in (0, 16), the top of training's range (objective.STEP_MAX; this
    CLI does not import torch)."""
    value = float(text)
    if not 0 < value < 16:
        raise argparse.ArgumentTypeError(f"{text} is not a step in (0, 16)")
    return value


def _one_file(inputs: list[Path], output: Path) -> bool:
    """`-o` names the output file itself (one input, and not an existing folder)."""
    return len(inputs) == 1 and not output.is_dir()


def _targets(inputs: list[Path], output: Path, name: Callable[[Path], str]) -> list[tuple[Path, Path]]:
    if _one_file(inputs, output):
        return [(inputs[0], output)]
    output.mkdir(parents=True, exist_ok=True)
    return [(src, output / name(src)) for src in inputs]


def _decoded_stem(src: Path) -> str:
    """`a.jpg.aic` -> `a`, `photo.2024.aic` -> `photo.2024`: the suffix of the format the
    image is written in goes after it (no `a.png.png`)."""
    name = src.name[: -len(".aic")] if src.name.lower().endswith(".aic") else src.name
    inner = Path(name).suffix.lower()
    if inner in Image.registered_extensions() and len(name) > len(inner):
        name = name[: -len(inner)]
    return name or src.name


def _run(pairs: list[tuple[Path, Path]], work) -> int:
    failed = 0
    with output.progress() as bar:
        task = bar.add_task("files", total=len(pairs), visible=len(pairs) > 1)
        for src, dst in pairs:
            try:
                work(src, dst)
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                failed += 1
                bar.console.print(f"aic-admin: {src}: {exc}", highlight=False, markup=False)
            bar.advance(task)
    return 1 if failed else 0


def compress(args: argparse.Namespace) -> int:
    from aic_worker.codec import Codec

    codec = Codec.load(args.model, args.device)

    def work(src: Path, dst: Path) -> None:
        with Image.open(src) as img:
            img.load()
            data = codec.compress(img, args.ratio)
        dst.write_bytes(data)

    return _run(_targets(args.inputs, args.output, lambda src: src.name + ".aic"), work)


def decompress(args: argparse.Namespace) -> int:
    from aic_worker.codec import Codec

    codecs: dict[str, Codec] = {}

    def codec_for(data: bytes) -> Codec:
        """``--model``, else the shipped model each file names (older releases' included)."""
        model_id = "" if args.model else bitstream.unpack(data).header.model_id.hex()
        if model_id not in codecs:
            path = args.model or shipped_weights(model_id)
            if path is None:
                raise ValueError(f"made by model {model_id[:16]}…, which this installation does not ship "
                                 "(give its weights with --model)")
            codecs[model_id] = Codec.load(path, args.device)
        return codecs[model_id]

    named = _one_file(args.inputs, args.output)
    written: dict[Path, Path] = {}

    def work(src: Path, dst: Path) -> None:
        data = src.read_bytes()
        img = codec_for(data).decompress(data)
        fmt = args.format or (SUFFIX_FORMATS.get(dst.suffix.lower()) if named else None)
        img, pil_format, suffix = for_file(img, fmt)
        if not named:
            dst = dst.with_name(dst.name + suffix)
        if dst in written:
            raise ValueError(f"{dst} was written from {written[dst]} in this run: not overwritten")
        extra = {k: img.info[k] for k in ("exif", "icc_profile") if k in img.info}
        img.save(dst, format=pil_format, **extra)
        written[dst] = src

    return _run(_targets(args.inputs, args.output, _decoded_stem), work)


def info(args: argparse.Namespace) -> int:
    data = args.file.read_bytes()
    try:
        f = validation.validate(data)
    except AicFormatError as exc:
        print(f"aic-admin: {args.file}: {exc}", file=sys.stderr)
        return 1
    hd = f.header
    code, filtered = rate_control.split_code(hd.step_code)
    record = {
        "file": str(args.file), "bytes": len(data), "format_version": hd.version,
        "model_id": hd.model_id.hex(), "width": hd.width, "height": hd.height, "mode": hd.mode,
        "target_ratio": round(hd.target_ratio, 3), "achieved_ratio": round(hd.achieved_ratio, 3),
        "step_code": hd.step_code, "step": round(rate_control.step_of(code), 6),
        "step_profile_tilt": step_profile.tilt_of(hd.step_code) / step_profile.TILT_UNIT,
        "synthesis": "learned" if filtered else "block transform only", "groups": len(f.groups),
        "max_groups": hd.latent_channels // hd.group_size,
        "metadata": {k: len(v) for k, v in f.metadata.items()},
    }
    if args.json:
        print(json.dumps(record))
    else:
        for k, v in record.items():
            print(f"{k:>17}: {v}")
    return 0


def train(args: argparse.Namespace) -> int:
    from aic_worker.training.loop import train as run
    from aic_worker.training.loop import with_post_blocks

    bar = output.progress()
    total = round(args.minutes * 60)
    task = bar.add_task("training (s)", total=total)
    start = time.monotonic()

    def report(step: int, loss: float, bpp: float, mse: float) -> None:
        bar.update(task, completed=min(total, round(time.monotonic() - start)),
                   description=f"training step {step} loss {loss:.3f} bpp {bpp:.3f} (s)")

    config = with_post_blocks(args.init, args.post_blocks)
    with bar:
        out = run(args.data, args.minutes, args.out, args.resume, init=args.init, lr=args.lr,
                  config=config, ms_ssim_weight=args.ms_ssim_weight, quantiser=args.quantiser,
                  bf16=args.precision == "bf16", step_min=args.step_min, report=report)
    print(f"weights written to {out}")
    return 0
