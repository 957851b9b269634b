"""The Codec facade: PIL image ⇄ ``.aic`` bytes, at any ratio, with one model.

    PIL ─image_modes.prepare─► RGB ─pad─► tiling.analyse ─► y
        ─rate_control.fit (Δ, rdoq, entropy.encode)─► payloads ─bitstream.pack─► .aic bytes

and back through ``bitstream.unpack`` → ``entropy.decode`` → ``tiling.synthesise``
→ ``image_modes.restore``. The codec knows nothing of files, queues or SQL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aic_worker.codec import bitstream, entropy, image_modes, rate_control, rdoq, step_profile, tiling
from aic_worker.codec.errors import AicFormatError
from aic_worker.codec.transforms import Autoencoder
from aic_worker.codec.validation import BOUNDED_FROM_VERSION, MAX_FILE_RATIO, validate
from aic_worker.codec.weights import load_model_bytes

DEFAULT_MODEL = "default.safetensors"
TARGET_FROM = 32.0          # from this ratio compress aims its symbols at the synthesis (below: no time)
MAX_RATIO = 4096          # the highest ratio ``compress`` and ``truncate`` accept


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_model_path() -> Path:
    return Path(str(resources.files("aic_worker.codec") / "models" / DEFAULT_MODEL))


def _check_ratio(ratio: float) -> None:
    if not ratio > 0 or not math.isfinite(ratio):
        raise ValueError(f"ratio must be a positive number, got {ratio!r}")
    if ratio > MAX_RATIO:
        raise ValueError(f"ratio {ratio:g} is above the highest AIC writes ({MAX_RATIO})")


class Codec:
    """One loaded model and the verbs every caller uses: compress, decompress, truncate."""

    def __init__(self, model: Autoencoder, model_id: str, device: torch.device) -> None:
        self.model = model.to(device).eval()
        if device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model_id = model_id
        self.device = device
        self.tilt = step_profile.DEFAULT_TILT   # the step profile this codec writes
        self.rdoq = True                       # symbols chosen by rate and distortion (rdoq)
        self.target_from = TARGET_FROM         # ratios from which symbols aim at the synthesis
        blocks = self.model.g_s.block.weight.detach().double().square().sum(dim=(1, 2, 3))
        self._curvature = blocks.float().cpu().numpy()     # ‖b_k‖² = ½ ∂²D/∂ŷ_k² of the block transform
        # RDOQ prices bits dearer in the colour channels (rdoq.chroma_prices); None: all at rdoq.LAMBDA
        rows = self.model.g_s.block.weight.detach().cpu().numpy()
        self.prices: np.ndarray | None = rdoq.chroma_prices(rows)

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto") -> Codec:
        """The shipped default model, or the safetensors weights at ``path``."""
        data = Path(path or default_model_path()).read_bytes()
        model, model_id = load_model_bytes(data)
        return cls(model, model_id, resolve_device(device))

    @classmethod
    def from_model(cls, model: Autoencoder, device: str = "cpu") -> Codec:
        """A codec around an in-memory model (tests, training evaluation)."""
        from aic_worker.codec.weights import model_bytes

        _, model_id = load_model_bytes(model_bytes(model))
        return cls(model, model_id, resolve_device(device))

    @property
    def group_size(self) -> int:
        return self.model.cfg.group_size

    # -- compress ---------------------------------------------------------------------------
    def compress(self, image: Image.Image, ratio: float) -> bytes:
        """The largest ``.aic`` file of at most W·H·3/ratio bytes."""
        _check_ratio(ratio)
        prepared = image_modes.prepare(image)
        return self._encode(prepared, self.latent(prepared.rgb), ratio)

    def compress_batch(
        self, images: Sequence[Image.Image], ratios: Sequence[float]
    ) -> list[bytes | Exception]:
        """``compress`` of each image at its ratio, the analysis of all of them in shared passes.

        Same bytes as ``compress`` image by image (batched convolutions compute each sample
        as if alone); only the forward passes are shared, rate control and entropy coding
        stay per image. An image that ``compress`` would refuse gets its exception in its
        slot, and the others are still encoded.
        """
        if len(images) != len(ratios):
            raise ValueError(f"{len(images)} images but {len(ratios)} ratios")
        results: list[bytes | Exception] = [ValueError("not encoded")] * len(images)
        prepared: dict[int, image_modes.Prepared] = {}
        for i, (image, ratio) in enumerate(zip(images, ratios, strict=True)):
            try:
                _check_ratio(ratio)
                prepared[i] = image_modes.prepare(image)
            except Exception as exc:  # this image's failure, not the batch's
                results[i] = exc
        latents = self._latents_or_errors([p.rgb for p in prepared.values()], max(len(images), 1))
        for (i, p), y in zip(prepared.items(), latents, strict=True):
            try:
                results[i] = y if isinstance(y, Exception) else self._encode(p, y, ratios[i])
            except Exception as exc:
                results[i] = exc
        return results

    def _latents_or_errors(self, rgbs: list[np.ndarray], max_batch: int) -> list[np.ndarray | Exception]:
        """Latents in shared passes; if memory runs out, each alone, so that a huge image fails alone."""
        try:
            return self.latents(rgbs, max_batch)
        except (RuntimeError, MemoryError):  # torch's out-of-memory errors are RuntimeErrors
            pass
        out: list[np.ndarray | Exception] = []
        for rgb in rgbs:
            try:
                out.append(self.latent(rgb))
            except Exception as exc:
                out.append(exc)
        return out

    def _encode(self, prepared: image_modes.Prepared, y: np.ndarray, ratio: float) -> bytes:
        """Rate control and entropy coding of one image's latent ``y`` into a file within its budget."""
        h, w = prepared.rgb.shape[:2]
        budget = math.floor(w * h * 3 / ratio)
        header = self._header(w, h, prepared.mode, ratio, 0, y.shape[1:])
        weights = step_profile.weights(self.tilt, y.shape[0])
        y /= weights[:, None, None]   # in place: a big image's latent is not copied (callers drop it)

        def sizer(payloads: list[bytes]) -> int:
            draft = bitstream.AicFile(header, prepared.metadata, payloads)
            return bitstream.file_overhead(draft) + sum(len(p) for p in payloads)

        try:
            result = rate_control.fit(
                y, budget, self.group_size, sizer, optimise=self.rdoq, weights=weights, prices=self.prices
            )
        except rate_control.RatioUnreachableError as exc:
            raise ValueError(f"ratio {ratio:g} cannot be met for a {w}x{h} image: {exc}") from exc
        latent_hw = y.shape[1:]
        del y                       # the caller's reference may live on; this one need not
        code = step_profile.with_tilt(result.code, self.tilt)
        if ratio < self.target_from:
            filtered = self._filter_helps(prepared.rgb, result.q, code)
        elif (target := self._synthesis_target(prepared.rgb, result.q, code, weights)) is None:
            filtered = False
        else:
            filtered = True
            # Under the Newton step's quadratic model (the block rows' cross terms left out:
            # |cos| ≤ 0.026 on model 9b6e8719…) the decoded error of any symbols is about
            # Σ ‖b_k‖² w_k² (q·Δ − t)² plus a constant: the refit's measure, and its guard.
            scale = weights[: target.shape[0]] * np.sqrt(self._curvature[: target.shape[0]])
            found = rate_control.refit(
                target, result, budget, self.group_size, sizer, optimise=self.rdoq, weights=scale,
                prices=self.prices,
            )
            if found is not None:
                result, code = found, step_profile.with_tilt(found.code, self.tilt)
        if not filtered:
            code |= rate_control.PLAIN
        header = self._header(w, h, prepared.mode, ratio, code, latent_hw)
        data = _padded(bitstream.AicFile(header, prepared.metadata, result.payloads))
        assert len(data) <= budget, "rate control exceeded its budget"
        return data

    def _filter_helps(self, rgb: np.ndarray, q: np.ndarray, code: int, on_error: int | None = None) -> bool:
        """Whether the learned synthesis branches beat the block transform alone on this image.

        The branches win at coarse steps (deblocking) and can cost a little at the finest
        ones; the encoder has the original, so it measures both and flags its choice in the
        header's step_code (``rate_control.PLAIN``), like a video codec's loop-filter flag.
        """
        if on_error is None:                  # the learned branches' error, unless the caller measured it
            on_error = _squared_error(self._reconstruct(q, code, True, rgb.shape), rgb)
        return on_error <= _squared_error(self._reconstruct(q, code, False, rgb.shape), rgb)

    def _synthesis_target(
        self, rgb: np.ndarray, q: np.ndarray, code: int, weights: np.ndarray
    ) -> np.ndarray | None:
        """The latent (divided by the step profile, as rate control has it) that the symbols
        should aim at so that the *decoded* image comes closest to the original; None when
        the block transform alone decodes ``q`` better (``_filter_helps``).

        Rounding y serves a decoder that is the block transform alone; the learned branches
        change what each symbol does to the pixels. One Newton step of Σ (x̂ − x)² from the
        decoded latent ŷ with the block transform's curvature, whose rows are nearly orthogonal
        (the KLT's, fine-tuned): t = ŷ − ∇/(2‖b_k‖²). For the block transform alone,
        unclamped, that is y itself.
        """
        step = float(rate_control.step_of(code & rate_control.CODE_BITS))
        on, target = tiling.synthesise_with_gradient(self.model, q, step, rgb, self.device, weights)
        on_error = _squared_error(on[: rgb.shape[0], : rgb.shape[1]], rgb)
        del on                      # a big image's pixels, before the next ones
        if not self._filter_helps(rgb, q, code, on_error):
            return None
        target *= (-0.5 / self._curvature[: q.shape[0]] / weights[: q.shape[0]])[:, None, None]
        span = rate_control.QUANTISE_CHANNELS            # in place, a few channels at a time
        for c in range(0, q.shape[0], span):
            target[c : c + span] += q[c : c + span] * np.float32(step)
        return target

    def _reconstruct(self, q: np.ndarray, code: int, filtered: bool, shape: tuple[int, ...]) -> np.ndarray:
        """Decoded (H, W, 3) uint8 pixels of symbols ``q`` (leading channels), as ``decode_rgb`` has
        them; ``code`` is the step code with its tilt (step_profile)."""
        tilt = step_profile.tilt_of(code)
        weights = step_profile.weights(tilt, q.shape[0]) if tilt else None
        step = rate_control.step_of(rate_control.split_code(code)[0])
        x = tiling.synthesise(self.model, q, step, filtered, self.device, weights)
        return np.ascontiguousarray(x[: shape[0], : shape[1]])

    def latent(self, rgb: np.ndarray) -> np.ndarray:
        """The (M, h, w) float latent of an (H, W, 3) uint8 image."""
        return tiling.analyse(self.model, self._pixels(rgb))[0].float().cpu().numpy()

    def latents(self, rgbs: Sequence[np.ndarray], max_batch: int) -> list[np.ndarray]:
        """``latent`` of each image, tiles of one shape ``max_batch`` to a forward pass."""
        ys = tiling.analyse_batch(self.model, [self._pixels(rgb) for rgb in rgbs], max_batch)
        return [y[0].float().cpu().numpy() for y in ys]

    def _pixels(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 → (1, 3, H', W') uint8, edge-padded to multiples of 16, on the device.

        Still bytes: ``tiling`` turns each tile into floats as it runs it.
        """
        h, w = rgb.shape[:2]
        ph, pw = -h % tiling.SCALE, -w % tiling.SCALE
        padded = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")
        return torch.from_numpy(padded).permute(2, 0, 1).unsqueeze(0).to(self.device)

    def _header(self, w: int, h: int, mode: str, ratio: float, code: int, latent_hw) -> bitstream.AicHeader:
        cfg = self.model.cfg
        return bitstream.AicHeader(
            model_id=bytes.fromhex(self.model_id), width=w, height=h, mode=mode,
            target_ratio=float(ratio), achieved_ratio=0.0, step_code=code,
            latent_channels=cfg.latent_channels, group_size=cfg.group_size,
            latent_height=latent_hw[0], latent_width=latent_hw[1],
        )

    # -- decompress -------------------------------------------------------------------------
    def decompress(self, data: bytes) -> Image.Image:
        """A PIL image of the original's size and mode (see ``image_modes``)."""
        f = self.check(data)
        return image_modes.restore(self.decode_rgb(f), f.header.mode, f.metadata)

    def check(self, data: bytes) -> bitstream.AicFile:
        """Unpack and validate a file for this codec's model, before any big allocation."""
        f = validate(data)
        hd = f.header
        if hd.model_id.hex() != self.model_id:
            raise AicFormatError(
                f"file was made by model {hd.model_id.hex()[:16]}…, this codec has {self.model_id[:16]}…"
            )
        cfg = self.model.cfg
        if (hd.latent_channels, hd.group_size) != (cfg.latent_channels, cfg.group_size):
            raise AicFormatError("file's latent layout does not match its model")
        return f

    def decode_rgb(self, f: bitstream.AicFile) -> np.ndarray:
        hd = f.header
        shape = (hd.latent_channels, hd.group_size, hd.latent_height, hd.latent_width)
        q = entropy.decode(f.groups, *shape, version=hd.version)
        filtered = rate_control.split_code(hd.step_code)[1]
        return self._reconstruct(q, hd.step_code, filtered, (hd.height, hd.width))

    # -- truncate ---------------------------------------------------------------------------
    def truncate(self, data: bytes, ratio: float) -> bytes:
        """A valid smaller file at ``ratio`` (≥ the file's own) by dropping trailing groups.

        No decoding and no original needed; works for files of any model.
        """
        f = validate(data)
        hd = f.header
        raw = hd.width * hd.height * 3
        _check_ratio(ratio)
        if ratio < hd.achieved_ratio * (1 - 1e-6):
            raise ValueError(f"cannot truncate towards a lower ratio ({ratio:g} < {hd.achieved_ratio:.2f})")
        budget = math.floor(raw / ratio)
        for keep in range(len(f.groups), 0, -1):
            out = bitstream.truncate_groups(data, keep, float(ratio))
            if len(out) <= budget:
                return _readable(out, budget)
        if not f.groups and len(data) <= budget:
            return _readable(bitstream.truncate_groups(data, 0, float(ratio)), budget)
        raise ValueError(
            f"ratio {ratio:g} cannot be reached by truncation: even the first channel group "
            f"does not fit {budget} bytes (recompress from the original instead)"
        )


def _padded(f: bitstream.AicFile) -> bytes:
    """``f`` packed, with a "pad" block of zeros if it would claim more than MAX_FILE_RATIO
    (an existing pad block is replaced, so a padded file truncated again is padded anew)."""
    f = bitstream.AicFile(f.header, {k: v for k, v in f.metadata.items() if k != "pad"}, f.groups)
    data = bitstream.pack(f)
    need = math.ceil(f.header.width * f.header.height * 3 / MAX_FILE_RATIO)
    pad = 0
    while len(data) < need:
        pad += need - len(data)
        data = bitstream.pack(bitstream.AicFile(f.header, {**f.metadata, "pad": bytes(pad)}, f.groups))
    return data


def _readable(data: bytes, budget: int) -> bytes:
    """A truncated file, padded (version 3 on) if readers would refuse it as claiming too much."""
    f = bitstream.unpack(data)
    hd = f.header
    if hd.version < BOUNDED_FROM_VERSION or hd.width * hd.height * 3 <= MAX_FILE_RATIO * len(data):
        return data
    padded = _padded(f)
    if len(padded) > budget:
        raise ValueError(f"truncation to {budget} bytes leaves too few to decode")
    return padded


def _squared_error(a: np.ndarray, b: np.ndarray, rows: int = 256) -> int:
    """Σ (a − b)² of two uint8 images, a band of rows at a time (bounded memory)."""
    total = 0
    for i in range(0, a.shape[0], rows):
        d = a[i : i + rows].astype(np.int32) - b[i : i + rows]
        total += int(np.square(d, out=d).sum(dtype=np.int64))
    return total
