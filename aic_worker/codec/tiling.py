"""Run the transforms tile by tile, so big images fit in bounded memory.

Each tile carries a halo of HALO latent units (64 pixels) on every side, wider
than the transforms' reach through their zero padding (~30 pixels), and only
its centre is kept: the stitched result equals a whole-image pass up to float
rounding, so there are no seams.

Nothing image-sized is held in floats: analysis converts each tile's uint8
pixels as it runs it, and synthesis dequantises each tile's integer symbols and
writes uint8 pixels, so a 6000x4000 image stays within the memory bound of #2.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch

from aic_worker.codec.transforms import Autoencoder

SCALE = 16      # pixels per latent unit
TILE = 64       # latent units per tile side (1024 pixels)
GRADIENT_TILE = 48   # the same with autograd's activations held (768 pixels: a Kodak image is one tile)
HALO = 4


def _spans(n: int, tile: int) -> list[tuple[int, int]]:
    return [(s, min(s + tile, n)) for s in range(0, n, tile)]


@torch.inference_mode()
def analyse(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) uint8 with H, W multiples of 16 → latent (1, M, H/16, W/16)."""
    return analyse_batch(model, [x], 1)[0]


@torch.inference_mode()
def synthesise(
    model: Autoencoder,
    q: np.ndarray,
    step: float,
    filtered: bool = True,
    device: torch.device | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Integer symbols (M', h, w), M' ≤ M leading channels, step Δ → uint8 pixels (16h, 16w, 3).

    Channels past M' (dropped groups) are zero. Each tile is dequantised (q·Δ·w_k in
    float32, w the step profile's multipliers when given) and rounded to uint8 on its own,
    exactly as a whole-image pass would do it.
    """
    device = device or torch.device("cpu")
    h, w = q.shape[1:]
    out = np.empty((h * SCALE, w * SCALE, 3), dtype=np.uint8)
    for halo, keep, place in _tiles(h, w, TILE):
        y = _dequantised(model, q[:, halo[0], halo[1]], step, device, weights)
        x = model.g_s(y, step, filtered)[0, :, _pixels(keep[0]), _pixels(keep[1])]
        out[_pixels(place[0]), _pixels(place[1])] = _bytes(x.clamp_(0, 1))
    return out


@torch.inference_mode(False)
def synthesise_with_gradient(
    model: Autoencoder,
    q: np.ndarray,
    step: float,
    reference: np.ndarray,
    device: torch.device | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``synthesise`` (filtered) and the gradient of Σ (x̂ − x)², x̂ and x in [0, 1], with
    respect to the dequantised latent q·Δ·w of q's channels: (pixels, (M', h, w) float32).

    Tile by tile as the decoder runs it: each tile's centre pixels depend on its latent with
    halo alone, so the gradient is the sum of the tiles' gradients over their halos.
    ``reference``: the original (H, W, 3) uint8 pixels, H ≤ 16h, W ≤ 16w: the padding the
    decoder crops away counts for nothing. cuDNN's backward runs its deterministic kernels,
    so that an encode on CUDA writes the same bytes each time.
    """
    device = device or torch.device("cpu")
    h, w = q.shape[1:]
    out = np.empty((h * SCALE, w * SCALE, 3), dtype=np.uint8)
    gradient = np.zeros(q.shape, dtype=np.float32)
    for halo, keep, place in _tiles(h, w, GRADIENT_TILE):
        y = _dequantised(model, q[:, halo[0], halo[1]], step, device, weights)
        leaf = y[:, : q.shape[0]].clone().requires_grad_(True)
        with torch.enable_grad(), _deterministic_cudnn():
            x = model.g_s(torch.cat([leaf, y[:, q.shape[0] :]], dim=1), step, True)
            x = x[0, :, _pixels(keep[0]), _pixels(keep[1])].clamp(0, 1)
            ref = torch.tensor(reference[_pixels(place[0]), _pixels(place[1])], device=device)
            seen = x[:, : ref.shape[0], : ref.shape[1]]
            error = (seen - ref.permute(2, 0, 1) / 255).square().sum()
            (g,) = torch.autograd.grad(error, leaf)
        out[_pixels(place[0]), _pixels(place[1])] = _bytes(x.detach())
        gradient[:, halo[0], halo[1]] += g[0].cpu().numpy()
    return out, gradient


def _deterministic_cudnn() -> AbstractContextManager[None]:
    """cuDNN's settings as they are, but deterministic kernels and no benchmarking."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=False, deterministic=True,
                       allow_tf32=cudnn.allow_tf32)


def _dequantised(
    model: Autoencoder, part: np.ndarray, step: float, device: torch.device, weights: np.ndarray | None
) -> torch.Tensor:
    """A tile's symbols (M', a, b) as the decoder's (1, M, a, b) float latent: q·Δ·w_k, zeros past M'."""
    y = torch.zeros((1, model.cfg.latent_channels, *part.shape[1:]), device=device)
    y[0, : part.shape[0]] = torch.from_numpy(part).to(device)
    y *= step
    if weights is not None:
        y[0, : part.shape[0]] *= torch.from_numpy(weights[: part.shape[0], None, None]).to(device)
    return y


def _bytes(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) floats in [0, 1] → (H, W, 3) uint8, rounded as the decoder rounds."""
    return x.mul(255).round_().byte().permute(1, 2, 0).cpu().numpy()


Box = tuple[slice, slice]


def _tiles(h: int, w: int, tile: int) -> list[tuple[Box, Box, Box]]:
    """For an (h, w) latent: each tile's (box with halo, its centre within that box, the centre's place)."""
    tiles = []
    for y0, y1 in _spans(h, tile):
        for x0, x1 in _spans(w, tile):
            a0, b0 = max(0, y0 - HALO), max(0, x0 - HALO)
            a1, b1 = min(h, y1 + HALO), min(w, x1 + HALO)
            tiles.append(((slice(a0, a1), slice(b0, b1)),
                          (slice(y0 - a0, y1 - a0), slice(x0 - b0, x1 - b0)),
                          (slice(y0, y1), slice(x0, x1))))
    return tiles


def _pixels(span: slice) -> slice:
    """A latent span as the pixel span it covers."""
    return slice(span.start * SCALE, span.stop * SCALE)


@dataclass(frozen=True)
class _Piece:
    """One forward pass's input: a whole image, or a tile with its halo, and where its centre goes."""

    image: int                        # index of the image it belongs to
    pixels: torch.Tensor              # (1, 3, 16·(a1−a0), 16·(b1−b0)) uint8
    keep: Box                         # the centre, in the piece's latent
    place: Box                        # where the centre goes in the image's latent


def _pieces(index: int, x: torch.Tensor) -> list[_Piece]:
    h, w = x.shape[2] // SCALE, x.shape[3] // SCALE
    if h <= TILE and w <= TILE:
        return [_Piece(index, x, (slice(None), slice(None)), (slice(None), slice(None)))]
    return [_Piece(index, x[:, :, _pixels(halo[0]), _pixels(halo[1])], keep, place)
            for halo, keep, place in _tiles(h, w, TILE)]


@torch.inference_mode()
def analyse_batch(model: Autoencoder, xs: Sequence[torch.Tensor], max_batch: int) -> list[torch.Tensor]:
    """``analyse`` of each (1, 3, H, W) in ``xs``, with pieces of one shape stacked into shared passes.

    Whole images up to one tile and the tiles of bigger ones are grouped by shape, across
    images, and run ``max_batch`` at a time (that bounds the memory a pass needs): a wider
    pass keeps a GPU busy and saves per-call overhead on a CPU. Each sample of a batched
    convolution is computed as if alone, so the latents are those of ``analyse``.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    outs: list[torch.Tensor | None] = [None] * len(xs)
    groups: dict[tuple[int, ...], list[_Piece]] = {}
    for index, x in enumerate(xs):
        pieces = _pieces(index, x)
        if len(pieces) > 1:
            h, w = x.shape[2] // SCALE, x.shape[3] // SCALE
            outs[index] = torch.empty((1, model.cfg.latent_channels, h, w), device=x.device)
        for piece in pieces:
            groups.setdefault(tuple(piece.pixels.shape), []).append(piece)
    for group in groups.values():
        for start in range(0, len(group), max_batch):
            chunk = group[start : start + max_batch]
            latents = model.g_a(_stack([p.pixels for p in chunk]))
            for piece, latent in zip(chunk, latents.split(1), strict=True):
                target = outs[piece.image]
                if target is None:      # a whole image: its latent is the result
                    outs[piece.image] = latent
                else:
                    target[:, :, piece.place[0], piece.place[1]] = latent[:, :, piece.keep[0], piece.keep[1]]
    assert all(out is not None for out in outs), "every image got its latent"
    return outs  # type: ignore[return-value]


def _stack(parts: list[torch.Tensor]) -> torch.Tensor:
    """Same-shape (1, 3, H, W) uint8 parts as one float batch in [0, 1], channels last on a CPU."""
    batch = (parts[0] if len(parts) == 1 else torch.cat(parts)).float().div_(255)
    if batch.device.type == "cpu":
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch
