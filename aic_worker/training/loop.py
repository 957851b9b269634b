"""The resumable training loop behind ``aic-admin train``.

Time-boxed rather than step-boxed (training runs fit around sessions): the
learning rate warms up, then follows a cosine over the requested minutes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from aic_worker.codec.transforms import Autoencoder, ModelConfig
from aic_worker.codec.weights import save_model
from aic_worker.training.checkpoint import load_checkpoint, save_checkpoint
from aic_worker.training.dataset import CropSampler
from aic_worker.training.objective import batch_loss

Report = Callable[[int, float, float, float], None]


def learning_rate(peak: float, step: int, fraction: float, warmup: int = 300, floor: float = 0.03) -> float:
    warm = min(1.0, (step + 1) / warmup)
    return peak * warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0))))


def train(
    data: Path,
    minutes: float,
    out: Path,
    resume: Path | None = None,
    *,
    crop: int = 128,
    batch: int = 8,
    lr: float = 1e-3,
    checkpoint_minutes: float = 10.0,
    config: ModelConfig | None = None,
    report: Report | None = None,
) -> Path:
    """Train for ``minutes`` of wall time; write weights to ``out`` and a checkpoint beside it."""
    ckpt = out.with_suffix(".ckpt.safetensors")
    if resume is not None:
        model, opt, step, total_s = load_checkpoint(resume, lr)
    else:
        model = Autoencoder(config or ModelConfig()).to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        step, total_s = 0, 0.0
    sampler = CropSampler.from_folder(data, crop, seed=step)
    model.train()
    start = last_ckpt = time.monotonic()
    budget = minutes * 60
    first_step = step
    while (now := time.monotonic()) - start < budget:
        for group in opt.param_groups:
            group["lr"] = learning_rate(lr, step - first_step, (now - start) / budget)
        result = batch_loss(model, sampler.batch(batch))
        opt.zero_grad(set_to_none=True)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if report:
            report(step, float(result.loss), result.bpp, result.mse)
        if time.monotonic() - last_ckpt > checkpoint_minutes * 60:
            _save(model, opt, step, total_s + time.monotonic() - start, ckpt, out)
            last_ckpt = time.monotonic()
    _save(model, opt, step, total_s + time.monotonic() - start, ckpt, out)
    return out


def _save(
    model: Autoencoder, opt: torch.optim.Adam, step: int, seconds: float, ckpt: Path, out: Path
) -> None:
    save_checkpoint(ckpt, model, opt, step, seconds)
    save_model(model, out, {"steps": str(step), "train_seconds": f"{seconds:.0f}"})
