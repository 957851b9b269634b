"""The resumable training loop behind ``aic-admin train``.

Time-boxed rather than step-boxed (training runs fit around sessions): the
learning rate warms up, then follows a cosine over the requested minutes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from aic_worker.codec.transforms import Autoencoder, ModelConfig
from aic_worker.codec.weights import load_model_bytes, save_model
from aic_worker.training.checkpoint import load_checkpoint, save_checkpoint
from aic_worker.training.dataset import CropSampler
from aic_worker.training.objective import BLOCK_GAIN, STEP_MIN, Quantiser, batch_loss, check_step_min
from aic_worker.training.pca import block_pca

Report = Callable[[int, float, float, float], None]
# A fresh model: the complete KLT (768 coefficients of a 16x16 RGB block) and a step-aware
# synthesis, the shape of the shipped model (docs/model.md).
FRESH = ModelConfig(latent_channels=768, step_input=1)


def learning_rate(peak: float, step: int, fraction: float, warmup: int = 300, floor: float = 0.03) -> float:
    warm = min(1.0, (step + 1) / warmup)
    return peak * warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0))))


def train(
    data: Path,
    minutes: float,
    out: Path,
    resume: Path | None = None,
    *,
    init: Path | None = None,
    crop: int = 128,
    batch: int = 8,
    lr: float = 1e-3,
    checkpoint_minutes: float = 10.0,
    config: ModelConfig | None = None,
    train_analysis: bool = False,
    ms_ssim_weight: float = 0.0,
    quantiser: Quantiser = "rdoq",
    bf16: bool = False,
    step_min: float = STEP_MIN,
    report: Report | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """Train for ``minutes`` of wall time; write weights to ``out`` and a checkpoint beside it.

    ``resume`` continues a checkpoint (weights, Adam state, step); ``init`` warm-starts
    from a weights file (a shipped model, say) with a fresh optimizer, into ``config`` when
    given (layers the weights lack start at their zero init, so the warm start decodes
    exactly as the weights did); with neither, a new model starts from the KLT of the
    training patches.

    By default the analysis stays the KLT it was initialised to and only the
    synthesis learns (pure distortion at every step size): measured on these
    CPUs, joint rate-distortion training of the analysis made files no smaller
    within a session's budget while it degraded the block transform.

    ``quantiser``: how the decoder's symbols are rounded (``objective.batch_loss``; with the
    analysis trained, to the nearest whatever it says); ``bf16``: the synthesis' learned
    branches in bfloat16 autocast; ``step_min``: the finest quantisation step drawn (both
    ``objective.batch_loss``).

    ``device``: where the steps run (``"cuda"`` on a GPU); crops are sampled on the CPU and
    moved there as bytes, and the objective's random steps and masks are drawn there.
    """
    check_step_min(step_min)                         # before the data loads
    ckpt = out.with_suffix(".ckpt.safetensors")
    device = torch.device(device)
    if resume is not None:
        model, opt, step, total_s = load_checkpoint(resume, lambda m: _optimizer(m, lr, train_analysis))
        sampler = CropSampler.from_folder(data, crop, seed=step)
    else:
        sampler = CropSampler.from_folder(data, crop)
        if init is not None:
            model = _warm_start(init, config)
        else:
            model = Autoencoder(config or FRESH)
            model.init_block_transform(*block_pca(sampler), gain=BLOCK_GAIN)
        model = model.to(memory_format=torch.channels_last)
        opt = _optimizer(model, lr, train_analysis)
        step, total_s = 0, 0.0
    model.train()
    _to_device(model, opt, device)
    start = last_ckpt = time.monotonic()
    budget = minutes * 60
    first_step = step
    while (now := time.monotonic()) - start < budget:
        rate = learning_rate(lr, step - first_step, (now - start) / budget)
        for group in opt.param_groups:
            group["lr"] = rate * group["scale"]
        with device if device.type != "cpu" else contextlib.nullcontext():
            x = sampler.batch(batch, device)
            result = batch_loss(
                model, x, with_rate=train_analysis, ms_ssim_weight=ms_ssim_weight, quantiser=quantiser,
                bf16=bf16, step_min=step_min,
            )
        opt.zero_grad(set_to_none=True)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if report:
            report(step, float(result.loss.detach()), result.bpp, result.mse)
        if time.monotonic() - last_ckpt > checkpoint_minutes * 60:
            _save(model, opt, step, total_s + time.monotonic() - start, ckpt, out)
            last_ckpt = time.monotonic()
    _save(model, opt, step, total_s + time.monotonic() - start, ckpt, out)
    return out


def _to_device(model: Autoencoder, opt: torch.optim.Adam, device: torch.device) -> None:
    """Move the model's parameters (in place: the optimizer keeps them) and Adam's moments."""
    model.to(device)
    for state in opt.state.values():
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key] = state[key].to(device)


def with_post_blocks(init: Path | None, post_blocks: int | None) -> ModelConfig | None:
    """The shape of ``init``'s model (a fresh one's without it) with ``post_blocks`` residual
    blocks in the post-filter, for ``train``'s ``config``; None (keep the shape) without them."""
    if post_blocks is None:
        return None
    base = load_model_bytes(init.read_bytes())[0].cfg if init is not None else FRESH
    return dataclasses.replace(base, post_blocks=post_blocks)


def _warm_start(init: Path, config: ModelConfig | None) -> Autoencoder:
    """The weights of ``init`` in a model of ``config`` (default: their own); only layers
    that ``init`` lacks may be missing, and those keep their zero-effect init."""
    source, _ = load_model_bytes(init.read_bytes())
    if config is None or config == source.cfg:
        return source
    model = Autoencoder(config)
    try:
        missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    except RuntimeError as exc:          # tensors of other shapes
        raise ValueError(f"{init}: weights do not fit {config}: {exc}") from exc
    if unexpected or any(not k.startswith("g_s.post_blocks.") for k in missing):
        raise ValueError(f"{init}: weights do not fit {config} (missing {missing}, unexpected {unexpected})")
    return model


def _optimizer(model: Autoencoder, lr: float, train_analysis: bool) -> torch.optim.Adam:
    """Adam; the KLT-initialised block layers move ten times slower than the new branches."""
    model.g_a.requires_grad_(train_analysis)
    block = [*model.g_a.block.parameters(), *model.g_s.block.parameters()]
    ids = {id(p) for p in block}
    rest = [p for p in model.parameters() if id(p) not in ids]
    block = [p for p in block if p.requires_grad]
    rest = [p for p in rest if p.requires_grad]
    return torch.optim.Adam([{"params": block, "scale": 0.1}, {"params": rest, "scale": 1.0}], lr=lr)


def _save(
    model: Autoencoder, opt: torch.optim.Adam, step: int, seconds: float, ckpt: Path, out: Path
) -> None:
    save_checkpoint(ckpt, model, opt, step, seconds)
    save_model(model, out, {"steps": str(step), "train_seconds": f"{seconds:.0f}"})
