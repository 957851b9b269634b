"""Is a trained model better than the shipped one? Its decoder at equal symbols, and the codec
end to end at equal bytes, both on training photos (never Kodak, where nothing is tuned).

1. Decoder alone: each image's symbols are chosen once, by the reference's analysis and the
   encoder's quantiser (RDOQ with colour prices, tilt as ``Codec.tilt``), at each step Δ of
   ``--steps``; both decoders synthesise the same symbols. A model's training leaves the
   analysis as it was, so this isolates what the new decoder does with what files carry.
2. End to end (``--end-to-end``): ``Codec.compress`` and ``decompress`` with each model at
   ``step_profile.RATIOS`` (rate control, the filter decision and aiming with the model's own
   synthesis), and the candidate's BD-rate against the reference per image, averaged, in PSNR,
   MS-SSIM and their luma (as ``bench/step_profile.py``).

Images: for the decoder, ``--train-sample N`` photos as ``bench/coding_gains.py`` draws them
(seed ``--seed``); end to end, ``bench/step_profile.py``'s: ``--wallpapers N`` of its cuts and
its four training photos (seed 23). ``--images DIR`` instead, for both: the PNGs of a folder.
The training photos are those the models learnt from (crops of them), as for every run's check.

    python bench/model_compare.py runs/17/x.safetensors
    python bench/model_compare.py runs/17/x.safetensors --end-to-end
"""

from __future__ import annotations

import argparse
import math
import platform
from pathlib import Path

import numpy as np
import torch
from coding_gains import folder, train_sample  # bench/ is on sys.path when run as a script
from rd import bd_rate, db
from step_profile import MEASURES, RATIOS, Curve, curve, wallpapers

from aic_worker.codec import Codec, rate_control, step_profile, tiling
from aic_worker.codec.quality import ms_ssim, psnr

STEPS = (1.0, 4.0, 16.0)


def decoder_alone(
    reference: Codec, candidate: Codec, images: list[np.ndarray], steps: tuple[float, ...]
) -> str:
    """Mean PSNR / MS-SSIM (dB) of the reference's decoder and the candidate's difference, per step."""
    group = reference.group_size
    scores: dict[tuple[float, int], list[tuple[float, float]]] = {}
    for rgb in images:
        y = reference.latent(rgb)
        weights = step_profile.weights(reference.tilt, y.shape[0])
        y /= weights[:, None, None]
        h, w = rgb.shape[:2]
        for delta in steps:
            code = rate_control.STEP_ONE + round(rate_control.CODES_PER_OCTAVE * math.log2(delta))
            step = float(rate_control.step_of(code))
            q, _ = rate_control.quantised(y, code, group, prices=reference.prices)   # the encoder's RDOQ
            for i, codec in enumerate((reference, candidate)):
                out = tiling.synthesise(codec.model, q, step, True, codec.device, weights)[:h, :w]
                scores.setdefault((delta, i), []).append((psnr(rgb, out), db(ms_ssim(rgb, out))))
    lines = ["| Δ | reference PSNR / MS-SSIM dB | candidate − reference |", "|---|---|---|"]
    for delta in steps:
        ref, cand = (np.mean(scores[(delta, i)], axis=0) for i in (0, 1))
        gain = cand - ref
        lines.append(f"| {delta:g} | {ref[0]:.3f} / {ref[1]:.3f} | {gain[0]:+.3f} / {gain[1]:+.3f} |")
    return "\n".join(lines)


def end_to_end(reference: Codec, candidate: Codec, images: list[np.ndarray]) -> str:
    """The candidate's BD-rate against the reference, per measure, averaged over images."""
    curves: list[tuple[Curve, Curve]] = [(curve(reference, rgb, RATIOS), curve(candidate, rgb, RATIOS))
                                         for rgb in images]
    cells = []
    for i, name in enumerate(MEASURES, 1):
        values = [bd_rate(r[0], r[i], c[0], c[i]) for r, c in curves]
        if any(v is None for v in values):
            cells.append(f"{name} n/a")
            continue
        cells.append(f"{name} {np.mean(values):+.2f} % ({min(values):+.2f} to {max(values):+.2f})")
    return "BD-rate of the candidate against the reference: " + ", ".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("candidate", type=Path, help="weights to judge (.safetensors)")
    ap.add_argument("--reference", type=Path, help="default: the shipped model")
    ap.add_argument("--train-sample", type=int, default=8, metavar="N")
    ap.add_argument("--seed", type=int, default=11, help="of the training sample")
    ap.add_argument("--wallpapers", type=int, default=3, metavar="N", help="end to end only")
    ap.add_argument("--images", type=Path, help="the PNGs of this folder instead (never Kodak)")
    ap.add_argument("--steps", type=float, nargs="+", default=list(STEPS), metavar="DELTA")
    ap.add_argument("--end-to-end", action="store_true", help="also the codec at equal bytes (minutes)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reference, candidate = Codec.load(args.reference, device="cpu"), Codec.load(args.candidate, device="cpu")
    images = folder(args.images) if args.images else train_sample(args.train_sample, args.seed)
    print(f"reference {reference.model_id[:16]}…, candidate {candidate.model_id[:16]}…, "
          f"{platform.machine()}, torch {torch.__version__}")
    print(f"decoder alone at equal symbols, {len(images)} images:")
    print(decoder_alone(reference, candidate, images, tuple(args.steps)), flush=True)
    if args.end_to_end:
        if not args.images:
            images = wallpapers(args.wallpapers) + train_sample(4, 23)   # step_profile's images
        print(f"end to end at equal bytes, {len(images)} images, ratios {RATIOS}:")
        print(end_to_end(reference, candidate, images))


if __name__ == "__main__":
    main()
