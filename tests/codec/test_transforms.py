"""The transforms' contract: a step-aware synthesis conditions on Δ; older layouts still load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aic_worker.codec import Codec
from aic_worker.codec.transforms import Autoencoder, BlockInverse, ModelConfig
from aic_worker.codec.weights import load_model_bytes, model_bytes
from tests.codec.conftest import make_model, photo_like


def test_fresh_branches_leave_the_block_transform_alone_at_every_step() -> None:
    model = make_model(3).eval()
    y = torch.randn(1, 32, 3, 4) * 50
    with torch.no_grad():
        plain = model.g_s.block(y)
        for step in (0.1, 1.0, 16.0):
            assert torch.allclose(model.g_s(y, step), plain, atol=1e-5)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_the_block_inverse_is_the_transposed_convolution_forward_and_backward(
    memory_format: torch.memory_format,
) -> None:
    """Every gradient too (the latent's for aiming, the weights' for training), also with the
    weights in channels_last, as ``Codec`` keeps them on the CPU."""
    block = BlockInverse(24, 3, 16)
    torch.nn.init.normal_(block.weight)
    torch.nn.init.normal_(block.bias)
    block = block.to(memory_format=memory_format)
    y = torch.randn(2, 24, 3, 5).contiguous(memory_format=memory_format).requires_grad_(True)
    weight = torch.randn(2, 3, 48, 80)
    wanted = (y, block.weight, block.bias)
    ours = block(y)
    ours_grads = torch.autograd.grad((ours * weight).sum(), wanted)
    theirs = torch.nn.functional.conv_transpose2d(y, block.weight, block.bias, stride=16)
    theirs_grads = torch.autograd.grad((theirs * weight).sum(), wanted)
    assert ours.shape == theirs.shape == (2, 3, 48, 80)
    assert torch.allclose(ours, theirs, atol=1e-4)
    for a, b in zip(ours_grads, theirs_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-3)


def test_analysis_skips_a_zero_refine_branch_unless_it_is_trained() -> None:
    model = make_model(3)
    x = torch.rand(2, 3, 32, 48)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.g_a(x), model.g_a.block(x))
        model.g_a.refine[-1].bias.fill_(0.5)
        assert torch.allclose(model.g_a(x), model.g_a.block(x) + 0.5)
        model.g_a.refine[-1].bias.zero_()
    model.train()                    # a zero branch must still learn: its gradient flows
    model.g_a(x).square().sum().backward()
    assert model.g_a.refine[-1].weight.grad is not None and model.g_a.refine[-1].weight.grad.any()
    runs = []
    model.g_a.refine.register_forward_hook(lambda *_: runs.append(1))
    model.g_a.requires_grad_(False)  # a frozen analysis (aic-admin train's default) skips it
    assert torch.equal(model.g_a(x), model.g_a.block(x)) and not runs
    model.g_a.requires_grad_(True)
    model.g_a(x)
    assert runs == [1]


def test_the_block_inverse_stays_float32_under_bfloat16_autocast() -> None:
    """Training's bf16 autocast (``batch_loss(bf16=True)``) must not round the base image, which
    carries all of the picture: the block inverse gives what it gives outside autocast."""
    block = BlockInverse(24, 3, 16)
    torch.nn.init.normal_(block.weight)
    y = torch.randn(2, 24, 3, 5) * 30
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = block(y)
        rounded = torch.nn.functional.conv_transpose2d(y, block.weight, block.bias, stride=16)
    assert inside.dtype == torch.float32 and torch.equal(inside, block(y))
    assert rounded.dtype == torch.bfloat16, "the check means something: autocast rounds a plain product"


def test_trained_branches_see_the_step() -> None:
    model = make_model(3).eval()
    with torch.no_grad():
        for p in model.g_s.post.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    y = torch.randn(1, 32, 3, 4) * 50
    with torch.no_grad():
        assert not torch.allclose(model.g_s(y, 0.5), model.g_s(y, 8.0))
        batch = model.g_s(torch.cat([y, y]), torch.tensor([0.5, 8.0]).view(2, 1, 1, 1))
        assert torch.allclose(batch[0], model.g_s(y, 0.5)[0], atol=1e-5)
        assert torch.allclose(batch[1], model.g_s(y, 8.0)[0], atol=1e-5)


def test_a_model_without_step_input_still_round_trips() -> None:
    """Weights of an earlier release (no step plane) load and decode as they did."""
    torch.manual_seed(0)
    old = Autoencoder(ModelConfig(channels=16, latent_channels=32, group_size=8))
    model, _ = load_model_bytes(model_bytes(old))
    assert model.cfg.step_input == 0
    codec = Codec.from_model(model)
    img = photo_like(40, 33)
    out = codec.decompress(codec.compress(img, ratio=12))
    assert out.size == img.size


@pytest.mark.parametrize("ratio", [8, 64])      # 8x: filter decision alone; 64x: aimed (Codec.target_from)
def test_the_encoder_turns_harmful_branches_off_and_the_decoder_obeys(ratio: int) -> None:
    """Branches that only add noise are flagged off in the header (step_code's PLAIN bit)."""
    from aic_worker.codec import bitstream, rate_control
    from aic_worker.codec.quality import psnr
    from aic_worker.training.dataset import CropSampler
    from aic_worker.training.pca import block_pca

    img = photo_like(48, 40)
    model = make_model(5)
    model.init_block_transform(*block_pca(CropSampler([np.asarray(img)], 16), patches=2000), gain=10.0)
    model.eval()
    codec = Codec.from_model(model)
    plain = codec.compress(img, ratio=ratio)
    assert not bitstream.unpack(plain).header.step_code & rate_control.PLAIN   # zero branches: on
    ref = np.asarray(img)
    before = psnr(ref, np.asarray(codec.decompress(plain)))
    with torch.no_grad():
        model.g_s.post[-2].weight.normal_(0, 0.5)                              # now they only add noise
    noisy = Codec.from_model(model)
    data = noisy.compress(img, ratio=ratio)
    code, filtered = rate_control.split_code(bitstream.unpack(data).header.step_code)
    assert not filtered and rate_control.CODE_MIN <= code <= rate_control.CODE_MAX
    assert psnr(ref, np.asarray(noisy.decompress(data))) == pytest.approx(before, abs=0.01)
