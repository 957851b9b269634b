"""Model weights on disk: safetensors only (nothing is ever unpickled).

A model's id is the sha256 of its weights file, which is what every ``.aic``
file names; the transforms' shape travels in the safetensors metadata.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load, save

from aic_worker.codec.transforms import Autoencoder, ModelConfig

FORMAT = "aic-model-1"


def model_bytes(model: Autoencoder, extra: dict[str, str] | None = None) -> bytes:
    """Serialise as float16 (half the size, no measurable loss) with the config."""
    tensors = {k: v.detach().to(torch.float16).contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(model.cfg.to_dict()), **(extra or {})}
    return save(tensors, metadata=meta)


def save_model(model: Autoencoder, path: Path, extra: dict[str, str] | None = None) -> str:
    """Write atomically; return the model id."""
    data = model_bytes(model, extra)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


def read_metadata(data: bytes) -> dict[str, str]:
    """The safetensors header's metadata, read without touching the tensors."""
    if len(data) < 8:
        raise ValueError("not a safetensors file: too short")
    n = int.from_bytes(data[:8], "little")
    if n > min(len(data) - 8, 1 << 24):
        raise ValueError("not a safetensors file: bad header length")
    return json.loads(data[8 : 8 + n]).get("__metadata__", {})


def load_model_bytes(data: bytes) -> tuple[Autoencoder, str]:
    """Build the autoencoder from weights bytes; return it with its id."""
    meta = read_metadata(data)
    if meta.get("format") != FORMAT:
        raise ValueError(f"unknown model format {meta.get('format')!r}")
    cfg = ModelConfig(**json.loads(meta["config"]))
    model = Autoencoder(cfg)
    model.load_state_dict({k: v.float() for k, v in load(data).items()})
    model.eval()
    return model, hashlib.sha256(data).hexdigest()
