"""Round trips, ratio bounds, truncation and metadata through the public Codec API."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from aic_worker.codec import AicFormatError, Codec, bitstream, rate_control, rdoq, step_profile, tiling
from tests.codec.conftest import make_model, photo_like


def _psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a.convert("RGB"), dtype=np.float64)
    y = np.asarray(b.convert("RGB"), dtype=np.float64)
    return 10 * np.log10(255**2 / max(np.mean((x - y) ** 2), 1e-10))


@pytest.mark.parametrize("ratio", [24, 32, 48, 64])
def test_ratio_is_honest_and_tight(codec: Codec, ratio: int) -> None:
    # The test model has only 32 latent channels, too few for 8x; Kodak's 8x is the bench's job.
    img = photo_like(128, 128)
    data = codec.compress(img, ratio=ratio)
    raw = 128 * 128 * 3
    assert len(data) <= raw / ratio
    assert raw / len(data) <= 1.05 * ratio
    assert bitstream.unpack(data).header.achieved_ratio == pytest.approx(raw / len(data), rel=1e-6)


def test_higher_ratio_gives_smaller_file(codec: Codec) -> None:
    img = photo_like(96, 64, seed=3)
    sizes = [len(codec.compress(img, ratio=r)) for r in (24, 32, 64)]
    assert sizes[0] > sizes[1] > sizes[2]


def test_unreachable_ratio_is_a_clear_error(codec: Codec) -> None:
    with pytest.raises(ValueError, match="cannot be met"):
        codec.compress(photo_like(4, 4), ratio=8)


@pytest.mark.parametrize("bad", [0, -3, float("nan"), float("inf")])
def test_bad_ratio_rejected(codec: Codec, bad: float) -> None:
    with pytest.raises(ValueError):
        codec.compress(photo_like(32, 32), ratio=bad)


def _modes() -> list[Image.Image]:
    rgb = photo_like(37, 29)
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray((np.arange(37 * 29) % 256).astype(np.uint8).reshape(29, 37)))
    p_transparent = rgb.quantize(16)
    p_transparent.info["transparency"] = 0
    wide = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return [
        rgb, rgb.convert("L"), rgba, rgba.convert("LA"), rgb.quantize(32), p_transparent,
        rgb.convert("CMYK"), rgb.convert("1"), Image.fromarray(wide), rgb.convert("YCbCr"),
    ]


def _mode_id(img: Image.Image) -> str:
    return img.mode + ("+t" if "transparency" in img.info else "")


@pytest.mark.parametrize("img", _modes(), ids=_mode_id)
def test_every_mode_round_trips(codec: Codec, img: Image.Image) -> None:
    out = codec.decompress(codec.compress(img, ratio=8))
    assert out.size == img.size
    expected = "RGBA" if "transparency" in img.info else img.mode
    assert out.mode == expected
    if img.mode in ("RGBA", "LA"):
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(img.getchannel("A")))
    if img.mode == "P" and "transparency" not in img.info:
        assert out.getpalette() == img.getpalette()


def test_transparent_palette_alpha_is_lossless(codec: Codec) -> None:
    img = next(m for m in _modes() if "transparency" in m.info)
    out = codec.decompress(codec.compress(img, ratio=8))
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(img.convert("RGBA").getchannel("A")))


@pytest.mark.parametrize("size", [(1, 400), (400, 1), (17, 33), (16, 16), (129, 3)])
def test_odd_sizes(codec: Codec, size: tuple[int, int]) -> None:
    img = photo_like(*size)
    out = codec.decompress(codec.compress(img, ratio=4))
    assert out.size == img.size and out.mode == "RGB"


def test_unsupported_mode_is_clear(codec: Codec) -> None:
    with pytest.raises(ValueError, match="mode 'F'"):
        codec.compress(Image.new("F", (32, 32)), ratio=8)


def test_exif_and_icc_are_kept(codec: Codec) -> None:
    img = photo_like(48, 40)
    exif = Image.Exif()
    exif[0x0112] = 6            # orientation
    exif[0x010F] = "AIC test camera"
    icc = b"\0\0\0\x20fake-icc-profile-for-the-test!!"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), icc_profile=icc)
    with Image.open(io.BytesIO(buf.getvalue())) as src:
        src.load()
        out = codec.decompress(codec.compress(src, ratio=8))
        assert out.info["exif"] == src.info["exif"]
        assert out.info["icc_profile"] == icc
        assert out.size == src.size
    assert out.getexif()[0x0112] == 6


def test_truncate_gives_a_valid_smaller_file(codec: Codec) -> None:
    img = photo_like(128, 128, seed=5)
    data = codec.compress(img, ratio=24)
    full = codec.decompress(data)
    prev = len(data)
    for ratio in (32, 48, 64):
        small = codec.truncate(data, ratio=ratio)
        assert len(small) <= 128 * 128 * 3 / ratio
        assert len(small) <= prev
        prev = len(small)
        out = codec.decompress(small)
        assert out.size == img.size
    assert _psnr(full, img) >= _psnr(codec.decompress(codec.truncate(data, ratio=64)), img) - 1e-9


def test_truncate_keeps_leading_groups_bit_exact(codec: Codec) -> None:
    data = codec.compress(photo_like(128, 128, seed=6), ratio=24)
    small = codec.truncate(data, ratio=40)
    a, b = bitstream.unpack(data), bitstream.unpack(small)
    assert 0 < len(b.groups) < len(a.groups)
    assert b.groups == a.groups[: len(b.groups)]


def test_truncate_refuses_a_lower_ratio(codec: Codec) -> None:
    data = codec.compress(photo_like(64, 64), ratio=32)
    with pytest.raises(ValueError, match="lower ratio"):
        codec.truncate(data, ratio=8)


def test_wrong_model_is_refused(codec: Codec) -> None:
    data = codec.compress(photo_like(32, 32), ratio=8)
    other = Codec.from_model(make_model(1))
    with pytest.raises(AicFormatError, match="model"):
        other.decompress(data)


def test_bomb_sized_header_refused_before_decoding(codec: Codec) -> None:
    data = codec.compress(photo_like(32, 32), ratio=8)
    f = bitstream.unpack(data)
    hd = f.header
    huge = type(hd)(**{**hd.__dict__, "width": 15000, "height": 15000, "latent_width": 938,
                       "latent_height": 938})
    bomb = bitstream.pack(bitstream.AicFile(huge, f.metadata, []))
    with pytest.raises(AicFormatError, match="decompression-bomb"):
        codec.decompress(bomb)


def test_truncate_refuses_to_keep_no_channel_group(codec: Codec) -> None:
    data = codec.compress(photo_like(128, 128), ratio=24)
    with pytest.raises(ValueError, match="first channel group"):
        codec.truncate(data, ratio=300)


def _orthonormal_codec() -> Codec:
    """Orthonormal block rows (analysis × 300, synthesis ÷ 300), as the KLT's are; the
    learned branches at zero."""
    model = make_model(3)
    rows = np.linalg.qr(np.random.default_rng(3).normal(size=(768, 32)))[0].T
    model.init_block_transform(torch.from_numpy(rows).float(), torch.full((768,), 0.5), 300.0)
    return Codec.from_model(model)


def _smooth(w: int, h: int) -> np.ndarray:
    """Mid-grey gradients: the projection on 32 rows stays inside [0, 255] (no clamping)."""
    yy, xx = np.mgrid[0:h, 0:w]
    planes = [100 + 60 * xx / w, 110 + 50 * yy / h, 120 + 30 * (xx + yy) / (w + h)]
    return np.stack(planes, -1).astype(np.uint8)


def test_the_synthesis_target_of_the_block_transform_alone_is_the_latent() -> None:
    """One Newton step through a decoder that is the block transform alone (the branches at
    zero) lands on the latent itself: the curvature and the step profile are read right."""
    codec = _orthonormal_codec()
    rgb = _smooth(64, 48)
    weights = step_profile.weights(codec.tilt, codec.model.cfg.latent_channels)
    y = codec.latent(rgb) / weights[:, None, None]
    code = rate_control.STEP_ONE + 40
    q = rate_control.quantise(y, code, codec.group_size)
    target = codec._synthesis_target(rgb, q, step_profile.with_tilt(code, codec.tilt), weights)
    assert target is not None and target.shape == q.shape
    assert np.allclose(target, y[: q.shape[0]], atol=1e-3 * np.abs(y).max())
    assert not np.allclose(q * rate_control.step_of(code), y[: q.shape[0]], atol=1e-3 * np.abs(y).max())


@pytest.mark.parametrize("ratio", [12, 40])
def test_aiming_at_a_decoder_that_is_the_block_transform_changes_no_byte(ratio: int) -> None:
    """Also under the caller's ``torch.inference_mode``: the aiming turns autograd back on."""
    codec = _orthonormal_codec()
    image = Image.fromarray(_smooth(96, 80))
    files = []
    for target_from in (0, math.inf):
        codec.target_from = target_from
        with torch.inference_mode():
            files.append(codec.compress(image, ratio))
    assert files[0] == files[1]


def _wavy(w: int, h: int, seed: int) -> np.ndarray:
    """Smooth gradients, waves and an edge: where the shipped synthesis' filter helps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], -1) * 150 + 50
    base += 25 * np.sin(xx / 5.0 + seed)[..., None] * np.cos(yy / 7.0)[..., None]
    base[:, : w // 3] += 30
    base += rng.normal(0, 2, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def test_aiming_at_the_shipped_synthesis_keeps_the_ratio_and_lowers_the_error() -> None:
    codec = Codec.load(device="cpu")
    rgb = _wavy(160, 128, seed=2)
    files = {}
    for target_from in (math.inf, 64):
        codec.target_from = target_from
        files[target_from] = codec.compress(Image.fromarray(rgb), 64)
    for data in files.values():
        assert 64 <= rgb.size / len(data) <= 64 * 1.05
    errors = {k: np.square(np.asarray(codec.decompress(d), float) - rgb).mean() for k, d in files.items()}
    assert files[64] != files[math.inf] and errors[64] < errors[math.inf] * 0.995


@pytest.mark.parametrize(("ratio", "aimed"), [(16, False), (31.9, False), (32, True), (256, True)])
def test_the_shipped_codec_aims_from_32x(ratio: float, aimed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    codec = Codec.load(device="cpu")
    calls: list[float] = []
    gradient = tiling.synthesise_with_gradient

    def spy(*args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        calls.append(ratio)
        return gradient(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tiling, "synthesise_with_gradient", spy)
    codec.compress(Image.fromarray(_wavy(160, 128, seed=5)), ratio)
    assert bool(calls) is aimed


def test_the_refit_weighs_each_channel_as_the_decoder_sees_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The refit's measure is the Newton step's quadratic model: channel k's error counts
    ‖b_k‖²·w_k² (block row norm, step profile), not w_k² alone nor uniformly."""
    codec = Codec.load(device="cpu")
    seen: list[np.ndarray] = []
    refit = rate_control.refit

    def spy(y: np.ndarray, *args: object, **kwargs: object) -> rate_control.RateResult | None:
        seen.append(kwargs["weights"])
        return refit(y, *args, **kwargs)

    monkeypatch.setattr(rate_control, "refit", spy)
    codec.target_from = 64
    codec.compress(Image.fromarray(_wavy(160, 128, seed=2)), 64)
    (scale,) = seen
    rows = codec.model.g_s.block.weight.detach().double().square().sum(dim=(1, 2, 3)).numpy()
    profile = step_profile.weights(codec.tilt, rows.size)
    n = scale.size
    assert n % codec.group_size == 0 and n > 0
    assert np.allclose(np.square(scale.astype(np.float64)), rows[:n] * np.square(profile[:n]), rtol=1e-5)


def test_colour_channels_bits_are_priced_dearer_in_fit_and_refit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped model's colour rows (low luma share) get rdoq.chroma_prices above 1, and
    both rate control's fit and the aimed symbols' refit quantise with them."""
    codec = Codec.load(device="cpu")
    rows = codec.model.g_s.block.weight.detach().numpy()
    assert np.array_equal(codec.prices, rdoq.chroma_prices(rows))
    assert codec.prices[0] == pytest.approx(1, abs=0.05) and codec.prices[1] > 2   # grey means; colour means
    seen: list[np.ndarray | None] = []
    for name in ("fit", "refit"):
        original = getattr(rate_control, name)

        def spy(*args: object, _original=original, **kwargs: object) -> object:
            seen.append(kwargs["prices"])
            return _original(*args, **kwargs)

        monkeypatch.setattr(rate_control, name, spy)
    codec.target_from = 64
    priced = codec.compress(Image.fromarray(_wavy(160, 128, seed=2)), 64)
    assert len(seen) == 2 and all(p is codec.prices for p in seen)
    codec.prices = None
    assert codec.compress(Image.fromarray(_wavy(160, 128, seed=2)), 64) != priced
