"""Analysis and synthesis transforms: the learned part of the codec.

Both are fully convolutional (stride 16 overall), so any image size works and
tiles stitch without seams when each tile carries a halo wider than the
receptive field.

    image ──g_a──► y (M channels, ordered by importance) ──quantize──► ŷ ──g_s──► image

Training drops the tail of ``y`` at random (see ``aic_worker.training``), so the
first n channels alone decode to a usable image: one model serves every ratio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a model; stored beside the weights so files name what they need."""

    channels: int = 128
    latent_channels: int = 192
    group_size: int = 8

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def groups(self) -> int:
        return self.latent_channels // self.group_size


class SimplifiedGDN(nn.Module):
    """Divisive normalisation ``x / (beta + gamma·|x|)`` (Johnston et al. 2019).

    Cheaper than the square-root GDN of Ballé et al. and as good for compression;
    ``inverse=True`` multiplies instead (IGDN) for the synthesis side.
    """

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(0.1 * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta.abs() + 1e-3
        gamma = self.gamma.abs().unsqueeze(-1).unsqueeze(-1)
        norm = nn.functional.conv2d(x.abs(), gamma, beta)
        return x * norm if self.inverse else x / norm


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def _deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class AnalysisTransform(nn.Sequential):
    """Image in [0, 1] (N, 3, H, W), H and W multiples of 16 → latent (N, M, H/16, W/16)."""

    def __init__(self, cfg: ModelConfig) -> None:
        n, m = cfg.channels, cfg.latent_channels
        super().__init__(
            _conv(3, n), SimplifiedGDN(n),
            _conv(n, n), SimplifiedGDN(n),
            _conv(n, n), SimplifiedGDN(n),
            _conv(n, m),
        )


class SynthesisTransform(nn.Sequential):
    """Dequantized latent (N, M, h, w) → image (N, 3, 16h, 16w), not yet clamped."""

    def __init__(self, cfg: ModelConfig) -> None:
        n, m = cfg.channels, cfg.latent_channels
        super().__init__(
            _deconv(m, n), SimplifiedGDN(n, inverse=True),
            _deconv(n, n), SimplifiedGDN(n, inverse=True),
            _deconv(n, n), SimplifiedGDN(n, inverse=True),
            _deconv(n, 3),
        )


class Autoencoder(nn.Module):
    """The pair of transforms that one weights file holds."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.g_a = AnalysisTransform(cfg)
        self.g_s = SynthesisTransform(cfg)
