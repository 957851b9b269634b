"""The variable-rate, truncation-aware training objective.

Each crop in a batch draws its own quantisation step Δ and its own number of
kept channel groups, so one model learns every ratio and learns to put the
most important information in the first channels (w: the step profile the encoder
writes, codec/step_profile.py):

    x ─g_a─► y ─÷Δw─► round as RDOQ does / +noise ─► mask tail groups ─×Δw─► g_s ─► x̂
                                    └──► Laplace bits (per image, per channel)

The decoder learns from symbols rounded as the encoder rounds them (``rdoq_like``): trained
on nearest rounding, it had gained 0.4 dB less over the block transform alone on the
encoder's real symbols than on rounded ones (docs/model.md, run 17).

The rate term mirrors the inference coder: a zero-mean Laplace whose scale is
fitted per image and channel (the coder sends that scale in its header).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from aic_worker.codec import rdoq, step_profile
from aic_worker.codec.quality import WEIGHTS, WINDOW, gaussian_window
from aic_worker.codec.transforms import Autoencoder

# λ(Δ) = LAMBDA_REF / Δ²: the slope of a uniform quantiser's high-rate R-D curve for
# the block transform at gain BLOCK_GAIN, so each Δ trains at the trade-off it is used at.
LAMBDA_REF = 0.04
BLOCK_GAIN = 10.0     # latent units per unit of KLT coefficient (pixels in [0, 1])
STEP_MIN, STEP_MAX = 0.1, 16.0
Quantiser = Literal["rdoq", "round"]
# The encoder's RDOQ (codec/rdoq.py) rounds |y/Δ| up past lo = ⌊|y/Δ|⌋ only where its fraction
# beats 0.5 + LAMBDA·p_k·b/2, b the extra bits of lo + 1 under the symbol's coder row. Measured
# on twelve training photos at Δ = 0.5 … 16 (model e52ab1b9…), ln b is close to normal with
# deviation 0.7 and mean RDOQ_LOG_BITS[min(lo, 2)] + 0.16·log2 Δ: contexts are quieter at coarse
# steps, so a one costs more there. The decoder is trained on symbols drawn that way (below
# Δ = 0.5 extrapolated; the channels the coder predicts, which RDOQ decides by their row
# differences, drawn like the rest).
RDOQ_LOG_BITS = (0.88, 0.66, -0.23)
RDOQ_LOG_BITS_PER_OCTAVE = 0.16
RDOQ_LOG_BITS_SPREAD = 0.7


@dataclass
class BatchLoss:
    loss: torch.Tensor
    bpp: float
    mse: float


def check_step_min(step_min: float) -> None:
    """ValueError unless ``step_min`` lies in (0, STEP_MAX)."""
    if not 0 < step_min < STEP_MAX:
        raise ValueError(f"step_min {step_min:g} must lie in (0, {STEP_MAX:g})")


def sample_steps(
    batch: int, generator: torch.Generator | None = None, step_min: float = STEP_MIN,
) -> torch.Tensor:
    """Quantisation steps, log-uniform from ``step_min`` to STEP_MAX (the range the rate control
    uses: large photos sit below 0.1 at low ratios)."""
    check_step_min(step_min)
    u = torch.rand(batch, generator=generator)
    return torch.exp(math.log(step_min) + u * (math.log(STEP_MAX) - math.log(step_min)))


def sample_keep_masks(batch: int, channels: int, group: int, p_full: float = 0.5) -> torch.Tensor:
    """(B, M, 1, 1) masks keeping a random number of leading channel groups."""
    groups = channels // group
    keep = torch.randint(1, groups + 1, (batch,))
    keep = torch.where(torch.rand(batch) < p_full, torch.full_like(keep, groups), keep)
    idx = torch.arange(channels).unsqueeze(0) // group
    return (idx < keep.unsqueeze(1)).float().view(batch, channels, 1, 1)


def rdoq_like(y: torch.Tensor, step: torch.Tensor, prices: torch.Tensor) -> torch.Tensor:
    """Symbols of ``y`` (latent ÷ steps) rounded as the encoder's RDOQ rounds them: up past
    lo only where the fraction beats a threshold drawn from RDOQ's measured distribution
    (``RDOQ_LOG_BITS``), each channel's bits at its price ``prices`` (M,). ``step``: (B, 1, 1, 1) Δ."""
    u = y.abs()
    lo = torch.floor(u)
    base = torch.tensor(RDOQ_LOG_BITS, device=y.device)[lo.clamp(max=2).long()]
    log_bits = base + RDOQ_LOG_BITS_PER_OCTAVE * torch.log2(step) + RDOQ_LOG_BITS_SPREAD * torch.randn_like(u)
    threshold = 0.5 + rdoq.LAMBDA * prices.view(1, -1, 1, 1) * torch.exp(log_bits) / 2
    return torch.sign(y) * (lo + (u - lo > threshold).to(y.dtype))


def laplace_bits(symbols: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Bits per image of noisy symbols under a per-image, per-channel Laplace fit."""
    scale = symbols.detach().abs().mean(dim=(2, 3), keepdim=True).clamp_min(0.02)

    def cdf(v: torch.Tensor) -> torch.Tensor:
        return 0.5 + 0.5 * torch.sign(v) * (1 - torch.exp(-v.abs() / scale))

    prob = (cdf(symbols + 0.5) - cdf(symbols - 0.5)).clamp_min(1e-9)
    return (-torch.log2(prob) * mask).sum(dim=(1, 2, 3))


def ms_ssim_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Differentiable MS-SSIM of each image pair in [0, 1] (N, 3, H, W): the measure the
    bench reports (``aic_worker.codec.quality``), with as many scales as the crop allows."""
    x, y = x * 255, y * 255
    c = x.shape[1]
    g = gaussian_window(WINDOW).to(x)
    kh, kv = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    levels = 1
    while levels < len(WEIGHTS) and min(x.shape[2:]) // 2**levels >= WINDOW:
        levels += 1
    weights = torch.tensor(WEIGHTS[:levels], device=x.device)
    weights = weights / weights.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    result = torch.ones(x.shape[0], device=x.device)
    for level in range(levels):
        def blur(t: torch.Tensor) -> torch.Tensor:
            return F.conv2d(F.conv2d(t, kh, groups=c), kv, groups=c)

        mx, my = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        cs = ((2 * sxy + c2) / (sxx + syy + c2)).mean(dim=(1, 2, 3))
        if level == levels - 1:
            lum = ((2 * mx * my + c1) / (mx**2 + my**2 + c1))
            cs = (lum * (2 * sxy + c2) / (sxx + syy + c2)).mean(dim=(1, 2, 3))
        else:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        result = result * cs.clamp_min(1e-6) ** weights[level]
    return result


def batch_loss(
    model: Autoencoder, x: torch.Tensor, with_rate: bool = True, ms_ssim_weight: float = 0.0,
    quantiser: Quantiser = "rdoq", bf16: bool = False, step_min: float = STEP_MIN,
) -> BatchLoss:
    """R + λ(Δ)·D over a batch of crops in [0, 1]; minus the mean PSNR when the analysis is frozen
    (plus ``ms_ssim_weight`` × the MS-SSIM error in dB, 10·log10(1 − MS-SSIM), when asked:
    archives are judged in PSNR and MS-SSIM alike).

    With a frozen analysis the rate cannot change, so the decoder is trained on
    what inference gives it (symbols as the encoder rounds them), and each crop counts by
    its PSNR: an MSE sum would let the few crops with most channels dropped,
    whose errors are a hundred times larger, drown out all the others.
    ``quantiser``: "rdoq" as the encoder's RDOQ rounds (``rdoq_like``; frozen analysis only),
    or "round" to the nearest symbol (the models before 7ebe12b1… learnt from those).
    ``bf16``: the synthesis' learned branches in bfloat16 autocast (the analysis, the block
    transforms and the loss stay float32). ``step_min``: the finest step drawn (``sample_steps``).
    """
    if quantiser not in ("rdoq", "round"):
        raise ValueError(f"unknown quantiser {quantiser!r}: 'rdoq' or 'round'")
    b = x.shape[0]
    cfg = model.cfg
    step = sample_steps(b, step_min=step_min).view(b, 1, 1, 1).to(x.device)
    mask = sample_keep_masks(b, cfg.latent_channels, cfg.group_size).to(x.device)
    # The step profile the encoder writes (format version 4): the decoder learns the noise
    # each channel really gets.
    profile = torch.from_numpy(step_profile.weights(step_profile.DEFAULT_TILT, cfg.latent_channels))
    steps = step * profile.view(1, -1, 1, 1).to(x.device)
    y = model.g_a(x) / steps
    noisy = y + torch.rand_like(y) - 0.5
    if with_rate:
        rounded = y + (torch.round(y) - y).detach()
    elif quantiser == "rdoq":
        rows = model.g_s.block.weight.detach().cpu().numpy()
        rounded = rdoq_like(y.detach(), step, torch.from_numpy(rdoq.chroma_prices(rows)).to(x.device))
    else:
        rounded = torch.round(y)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        x_hat = model.g_s(rounded * mask * steps, step).float()
    pixels = x.shape[2] * x.shape[3]
    bpp = laplace_bits(noisy, mask) / pixels
    mse = ((x_hat - x) ** 2).mean(dim=(1, 2, 3))
    lam = LAMBDA_REF / step.view(b) ** 2
    psnr_loss = 10 * torch.log10(mse.clamp_min(1e-10))
    if ms_ssim_weight:
        error = (1 - ms_ssim_per_image(x_hat.clamp(0, 1), x)).clamp_min(1e-6)
        psnr_loss = psnr_loss + ms_ssim_weight * 10 * torch.log10(error)
    per_image = bpp + lam * 255**2 * mse if with_rate else psnr_loss
    return BatchLoss(per_image.mean(), float(bpp.detach().mean()), float(mse.detach().mean()))
