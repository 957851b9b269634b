"""Training pieces: masks, crops, PCA init, checkpoints and a short resumable run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aic_worker.codec.transforms import Autoencoder, ModelConfig
from aic_worker.codec.weights import load_model_bytes
from aic_worker.training import loop
from aic_worker.training.checkpoint import load_checkpoint
from aic_worker.training.dataset import CropSampler, load_downscaled
from aic_worker.training.loop import train
from aic_worker.training.objective import (
    BLOCK_GAIN,
    STEP_MAX,
    STEP_MIN,
    batch_loss,
    rdoq_like,
    sample_keep_masks,
    sample_steps,
)
from aic_worker.training.pca import block_pca

TINY = ModelConfig(channels=8, latent_channels=16, group_size=4)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(3):
        yy, xx = np.mgrid[0:160, 0:200]
        img = np.stack([xx * (i + 1) % 256, yy, (xx + yy) % 256], -1) + rng.integers(0, 30, (160, 200, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"p{i}.jpg", quality=95)
    Image.new("RGB", (40, 40)).save(root / "too_small.jpg")
    return root


def test_masks_keep_a_leading_prefix_of_whole_groups() -> None:
    masks = sample_keep_masks(64, 16, 4).view(64, 16)
    for m in masks:
        kept = int(m.sum())
        assert kept % 4 == 0 and kept >= 4
        assert m[:kept].all() and not m[kept:].any()


def test_photos_are_downscaled_at_least_twice(photos: Path) -> None:
    arr = load_downscaled(photos / "p0.jpg", 32)
    assert arr is not None and arr.shape == (80, 100, 3)
    assert load_downscaled(photos / "too_small.jpg", 32) is None


def test_sampler_gives_channels_last_crops(photos: Path) -> None:
    batch = CropSampler.from_folder(photos, 32).batch(5)
    assert batch.shape == (5, 3, 32, 32)
    assert float(batch.min()) >= 0 and float(batch.max()) <= 1


def test_pca_init_orders_channels_by_energy(photos: Path) -> None:
    sampler = CropSampler.from_folder(photos, 32)
    basis, mean = block_pca(sampler, patches=3000)
    model = Autoencoder(TINY)
    model.init_block_transform(basis, mean, gain=10.0)
    with torch.no_grad():
        y = model.g_a(sampler.batch(8))
    energy = y.pow(2).mean(dim=(0, 2, 3))
    assert energy[0] > energy[4] > energy[15]
    assert torch.allclose(basis @ basis.T, torch.eye(basis.shape[0]), atol=1e-4)


def test_decoder_only_loss_is_minus_psnr(photos: Path) -> None:
    model = Autoencoder(TINY)
    result = batch_loss(model, CropSampler.from_folder(photos, 32).batch(4), with_rate=False)
    assert result.loss.item() == pytest.approx(10 * np.log10(result.mse), abs=3.0)


def test_short_run_writes_weights_and_resumes(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    train(photos, minutes=0.05, out=out, crop=32, batch=2, config=TINY)
    model, model_id = load_model_bytes(out.read_bytes())
    assert model.cfg == TINY and len(model_id) == 64
    ckpt = out.with_suffix(".ckpt.safetensors")
    _, opt, steps, _ = load_checkpoint(ckpt, lambda m: torch.optim.Adam(m.parameters()))
    assert steps > 0 and opt.state, "Adam's moments travel with the checkpoint"
    train(photos, minutes=0.05, out=out, resume=ckpt, crop=32, batch=2)
    _, _, steps_after, seconds = load_checkpoint(ckpt, lambda m: torch.optim.Adam(m.parameters()))
    assert steps_after > steps and seconds > 0


def test_init_warm_starts_from_weights_with_a_fresh_optimizer(photos: Path, tmp_path: Path) -> None:
    first = tmp_path / "first.safetensors"
    train(photos, minutes=0.05, out=first, crop=32, batch=2, config=TINY)
    warm = tmp_path / "warm.safetensors"
    train(photos, minutes=0.05, out=warm, crop=32, batch=2, init=first)
    before, _ = load_model_bytes(first.read_bytes())
    after, _ = load_model_bytes(warm.read_bytes())
    assert after.cfg == before.cfg
    # the analysis is frozen, so a warm start keeps it exactly; the synthesis goes on learning
    assert torch.equal(after.g_a.block.weight, before.g_a.block.weight)
    ckpt = warm.with_suffix(".ckpt.safetensors")
    _, _, steps, _ = load_checkpoint(ckpt, lambda m: torch.optim.Adam(m.parameters()))
    assert steps > 0


def test_ms_ssim_objective_matches_the_measure_the_bench_reports() -> None:
    from aic_worker.codec.quality import ms_ssim
    from aic_worker.training.objective import ms_ssim_per_image

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (2, 96, 96, 3)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    ours = ms_ssim_per_image(*(torch.from_numpy(t).permute(0, 3, 1, 2).float() / 255 for t in (b, a)))
    for i in range(2):
        assert float(ours[i]) == pytest.approx(ms_ssim(a[i], b[i]), abs=1e-4)


def test_a_warm_start_into_more_post_filter_blocks_decodes_as_the_weights_did(
    photos: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    from aic_worker.codec.weights import save_model

    source = Autoencoder(TINY)
    torch.nn.init.normal_(source.g_s.post[7].weight, std=0.01)      # a trained-looking post-filter
    save_model(source, tmp_path / "src.safetensors")
    out = train(photos, 0.02, tmp_path / "w.safetensors", init=tmp_path / "src.safetensors",
                config=replace(TINY, post_blocks=2), crop=64, batch=2, lr=0.0, ms_ssim_weight=0.5)
    grown, _ = load_model_bytes(out.read_bytes())
    assert grown.cfg.post_blocks == 2
    y = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        assert torch.allclose(grown.g_s(y, 2.0), source.eval().g_s(y, 2.0), atol=1e-3)


def test_the_shape_with_more_post_filter_blocks_is_the_warm_starts_own(tmp_path: Path) -> None:
    """``aic-admin train --post-blocks`` and ``bench/gpu.py --post-blocks`` widen the model they
    start from, not a fresh model's shape."""
    from dataclasses import replace

    from aic_worker.codec.weights import save_model
    from aic_worker.training.loop import FRESH, with_post_blocks

    save_model(Autoencoder(TINY), tmp_path / "src.safetensors")
    assert with_post_blocks(tmp_path / "src.safetensors", None) is None
    assert with_post_blocks(tmp_path / "src.safetensors", 3) == replace(TINY, post_blocks=3)
    assert with_post_blocks(None, 2) == replace(FRESH, post_blocks=2)


def test_rdoq_like_symbols_lie_between_floor_and_nearest() -> None:
    torch.manual_seed(0)
    y = torch.randn(2, 16, 8, 8) * 4
    q = rdoq_like(y, torch.full((2, 1, 1, 1), 2.0), torch.ones(16))
    nearest, floor = torch.round(y), torch.sign(y) * torch.floor(y.abs())
    assert torch.all((q == nearest) | (q == floor)), "RDOQ weighs only ⌊|y|⌋ and ⌊|y|⌋ + 1"
    assert torch.all(q[y.abs() <= 0.5] == 0) and torch.all(torch.sign(q) * torch.sign(y) >= 0)
    assert (q != nearest).any(), "some symbols near a boundary go down, as RDOQ sends them"


def test_rdoq_like_rounds_down_more_where_bits_are_dearer() -> None:
    torch.manual_seed(1)
    y = torch.rand(1, 2, 256, 256) * 3          # fractions spread evenly over [0, 1)
    q = rdoq_like(y, torch.ones(1, 1, 1, 1), torch.tensor([1.0, 2.5]))
    down = (q != torch.round(y)).float().mean(dim=(0, 2, 3))
    assert down[1] > 1.5 * down[0] > 0, "a colour channel's dearer bits send more symbols down"
    fine = rdoq_like(y, torch.full((1, 1, 1, 1), 0.25), torch.ones(2))
    coarse = rdoq_like(y, torch.full((1, 1, 1, 1), 16.0), torch.ones(2))
    assert (coarse != torch.round(y)).sum() > (fine != torch.round(y)).sum(), "ones dearer at coarse steps"


def test_the_decoder_sees_the_quantiser_asked_for(photos: Path) -> None:
    model = Autoencoder(TINY)
    torch.nn.init.normal_(model.g_s.post[7].weight, std=0.05)    # a decoder that shows its input
    x = CropSampler.from_folder(photos, 32).batch(4)
    losses = {}
    for quantiser in ("rdoq", "round", "rdoq"):
        torch.manual_seed(5)                                        # the same steps, masks and draws
        losses.setdefault(quantiser, []).append(batch_loss(model, x, False, quantiser=quantiser).loss.item())
    assert losses["rdoq"][0] == losses["rdoq"][1], "one seed, one loss"
    assert losses["rdoq"][0] != losses["round"][0], "RDOQ-like symbols are not the nearest ones"
    with pytest.raises(ValueError, match="quantiser"):
        batch_loss(model, x, False, quantiser="nearest")  # type: ignore[arg-type]


def test_a_run_can_learn_from_rdoq_like_symbols(photos: Path, tmp_path: Path) -> None:
    out = train(photos, minutes=0.03, out=tmp_path / "r.safetensors", crop=32, batch=2, config=TINY,
                quantiser="rdoq")
    assert load_model_bytes(out.read_bytes())[0].cfg == TINY


def test_bf16_branches_give_nearly_the_float32_loss(photos: Path) -> None:
    """``batch_loss(bf16=True)`` runs the learned branches in bfloat16: a different loss (it is
    applied), within a few hundredths of a dB of float32's on a KLT model (the block inverse
    stays float32: tests/codec/test_transforms.py)."""
    sampler = CropSampler.from_folder(photos, 32)
    model = Autoencoder(TINY)
    model.init_block_transform(*block_pca(sampler), gain=BLOCK_GAIN)
    torch.nn.init.normal_(model.g_s.post[7].weight, std=0.05)
    x = sampler.batch(4)
    losses = []
    for bf16 in (False, True):
        torch.manual_seed(7)
        losses.append(batch_loss(model, x, False, bf16=bf16).loss.item())
    assert losses[0] != losses[1]
    assert abs(losses[0] - losses[1]) < 0.03


def test_steps_are_drawn_from_step_min_to_the_top() -> None:
    g = torch.Generator().manual_seed(3)
    default = sample_steps(4096, g)
    finer = sample_steps(4096, g, step_min=0.05)
    assert default.min() >= STEP_MIN and default.max() <= STEP_MAX
    assert 0.05 <= finer.min() < 0.055 and finer.max() <= STEP_MAX
    # log-uniform: an eighth of the draws from 0.05 … 16 fall below 0.1 (log 2 / log 320 = 0.12)
    assert 0.10 < (finer < STEP_MIN).float().mean() < 0.14
    for bad in (0.0, -1.0, STEP_MAX):
        with pytest.raises(ValueError, match="step_min"):
            sample_steps(2, step_min=bad)


def test_the_loop_passes_the_precision_and_step_min_on(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bool, float]] = []

    def recording(*args: object, bf16: bool = False, step_min: float = STEP_MIN, **kwargs: object) -> object:
        seen.append((bf16, step_min))
        return batch_loss(*args, bf16=bf16, step_min=step_min, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "batch_loss", recording)
    for bf16, step_min in ((True, 0.05), (False, STEP_MIN)):
        seen.clear()
        kwargs = {"step_min": step_min} if step_min != STEP_MIN else {}
        train(photos, minutes=0.01, out=tmp_path / "b.safetensors", crop=32, batch=2, config=TINY, bf16=bf16,
              **kwargs)
        assert seen and set(seen) == {(bf16, step_min)}
