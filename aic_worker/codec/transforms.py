"""Analysis and synthesis transforms: the learned part of the codec.

A block transform carries the bulk of the work and starts life as the KLT
(PCA) of 16x16 RGB patches, so the latent's channels are ordered by importance
from step one; small nonlinear branches, zero at initialisation, learn what a
block transform cannot (context across block edges, deblocking):

    x ─┬─ block (16x16/16 conv, PCA init) ────────────(+)─► y   (M channels, ordered)
       └─ refine: unshuffle 4 → convs → 1x1 (zero init) ─┘

    ŷ ─(+ latent refine: 3x3 convs, zero init)─► block⁻¹ (transposed conv: one matmul) ─► base
    base ─(+ post-filter: unshuffle 4 → convs (+ residual blocks) → shuffle, zero init)─► x̂

All of it is convolutional (stride 16 overall), so any image size works, and
tiles stitch without seams given a halo wider than the receptive field.
Training drops the tail of ``y`` at random (``aic_worker.training``), so the
first n channels alone decode well: one model serves every ratio.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch
from torch import nn

BLOCK = 16


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a model; stored beside the weights."""

    channels: int = 96
    latent_channels: int = 192
    group_size: int = 8
    step_input: int = 0     # 1: the synthesis also sees log2 of the file's step Δ
    post_blocks: int = 0    # residual blocks added to the post-filter (zero init: a warm start is exact)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def groups(self) -> int:
        return self.latent_channels // self.group_size


def _zero(layer: nn.Conv2d) -> nn.Conv2d:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def _residual(n: int) -> nn.Sequential:
    """conv → LeakyReLU → conv (zero init), added to its input: adds nothing until trained."""
    return nn.Sequential(_conv3(n, n), nn.LeakyReLU(0.1), _zero(_conv3(n, n)))


class BlockInverse(nn.ConvTranspose2d):
    """The synthesis' block transform: a transposed convolution whose stride is its kernel
    (no overlap), computed as one matrix product of the latent's positions by the weight's
    rows. Same parameters and weights file as ``nn.ConvTranspose2d``; on the 2-core CPU it
    takes half the time of torch's transposed convolution, forward and backward (0.04 s
    against 0.08 s for a Kodak image), which the decoder and the encoder's filter decision
    and aiming each pay."""

    def __init__(self, in_channels: int, out_channels: int, block: int) -> None:
        """Only this shape: a square kernel, stride = kernel, no padding, dilation or groups."""
        super().__init__(in_channels, out_channels, block, stride=block)

    def forward(self, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]  # no output_size
        """In the weights' precision even under training's bfloat16 autocast: the base image
        carries all of the picture, which bfloat16's 8-bit mantissa would round."""
        n, m, h, w = y.shape
        k, c = self.kernel_size[0], self.out_channels
        kind = y.device.type
        autocast = torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind)
        with torch.autocast(kind, enabled=False) if autocast else contextlib.nullcontext():
            rows = y.to(self.weight.dtype).permute(0, 2, 3, 1).reshape(n * h * w, m)
            x = rows @ self.weight.reshape(m, c * k * k)
        x = x.reshape(n, h, w, c, k, k).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h * k, w * k)
        return x + self.bias.view(1, c, 1, 1)


class AnalysisTransform(nn.Module):
    """Image in [0, 1] (N, 3, H, W), H and W multiples of 16 → latent (N, M, H/16, W/16)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        n, m = cfg.channels, cfg.latent_channels
        self.block = nn.Conv2d(3, m, BLOCK, stride=BLOCK)
        self.refine = nn.Sequential(
            nn.PixelUnshuffle(4), _conv3(48, n), nn.LeakyReLU(0.1),
            _conv3(n, n, 2), nn.LeakyReLU(0.1),
            _conv3(n, n, 2), nn.LeakyReLU(0.1),
            _zero(nn.Conv2d(n, m, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A refine branch still at its zero init is skipped unless it is being trained: it adds
        exactly zero, and it would cost three times the block transform's time (the shipped
        model's case, and every frozen-analysis training step)."""
        last = self.refine[-1]
        if (self.training and last.weight.requires_grad) or last.weight.any() or last.bias.any():
            return self.block(x) + self.refine(x)
        return self.block(x)


class SynthesisTransform(nn.Module):
    """Dequantized latent (N, M, h, w) → image (N, 3, 16h, 16w), not yet clamped."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        n, m, s = cfg.channels, cfg.latent_channels, cfg.step_input
        self.step_input = s
        self.latent_refine = nn.Sequential(_conv3(m + s, 2 * n), nn.LeakyReLU(0.1), _zero(_conv3(2 * n, m)))
        self.block = BlockInverse(m, 3, BLOCK)
        self.post = nn.Sequential(
            nn.PixelUnshuffle(4), _conv3(48 + s, n), nn.LeakyReLU(0.1),
            _conv3(n, n), nn.LeakyReLU(0.1),
            _conv3(n, n), nn.LeakyReLU(0.1),
            _zero(_conv3(n, 48)), nn.PixelShuffle(4),
        )
        self.post_blocks = nn.ModuleList(_residual(n) for _ in range(cfg.post_blocks))

    def forward(
        self, y: torch.Tensor, step: float | torch.Tensor = 1.0, filtered: bool = True
    ) -> torch.Tensor:
        """``step``: the quantisation step Δ of ``y`` (a number, or one per image (N, 1, 1, 1));
        ``filtered=False``: the block transform alone, without the learned branches."""
        if not filtered:
            return self.block(y)
        base = self.block(y + self.latent_refine(self._with_step(y, step)))
        features = self.post[1:7](self._with_step(self.post[0](base), step))
        for block in self.post_blocks:
            features = features + block(features)
        return base + self.post[7:](features)

    def _with_step(self, t: torch.Tensor, step: float | torch.Tensor) -> torch.Tensor:
        """Append a plane of log2(Δ)/4 when the model is step-aware: its filters then know
        how coarse the latent is, staying out of the way at fine steps and deblocking at coarse ones."""
        if not self.step_input:
            return t
        level = torch.log2(torch.as_tensor(step, dtype=t.dtype, device=t.device)) / 4
        plane = level.reshape(-1, 1, 1, 1).expand(t.shape[0], 1, *t.shape[2:])
        return torch.cat([t, plane.to(memory_format=torch.contiguous_format)], dim=1)


class Autoencoder(nn.Module):
    """The pair of transforms that one weights file holds."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.g_a = AnalysisTransform(cfg)
        self.g_s = SynthesisTransform(cfg)

    @torch.no_grad()
    def init_block_transform(self, basis: torch.Tensor, mean: torch.Tensor, gain: float) -> None:
        """Set both block layers to the KLT: ``basis`` (M, 3·16·16) orthonormal rows, ``mean`` (3·16·16)."""
        m = self.cfg.latent_channels
        kernels = basis[:m].reshape(m, 3, BLOCK, BLOCK)
        self.g_a.block.weight.copy_(kernels * gain)
        self.g_a.block.bias.copy_(-(basis[:m] @ mean) * gain)
        self.g_s.block.weight.copy_(kernels / gain)
        self.g_s.block.bias.copy_(mean.reshape(3, BLOCK, BLOCK).mean(dim=(1, 2)))
