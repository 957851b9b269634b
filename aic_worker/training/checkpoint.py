"""Resumable training checkpoints, in safetensors like everything else.

Holds float32 weights, Adam's moment tensors and the step count, so a run
stopped at any time continues where its last checkpoint left it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from aic_worker.codec.transforms import Autoencoder, ModelConfig


def save_checkpoint(path: Path, model: Autoencoder, opt: torch.optim.Adam, step: int, seconds: float) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    names = dict(model.named_parameters())
    for name, p in names.items():
        state = opt.state.get(p)
        if state:
            tensors[f"adam.m.{name}"] = state["exp_avg"].contiguous()
            tensors[f"adam.v.{name}"] = state["exp_avg_sq"].contiguous()
            tensors[f"adam.step.{name}"] = torch.as_tensor(state["step"], dtype=torch.float32).reshape(1)
    meta = {"config": json.dumps(model.cfg.to_dict()), "step": str(step), "seconds": str(seconds)}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def load_checkpoint(
    path: Path, make_optimizer: Callable[[Autoencoder], torch.optim.Adam]
) -> tuple[Autoencoder, torch.optim.Adam, int, float]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    model = Autoencoder(ModelConfig(**json.loads(meta["config"])))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model)
    for name, p in model.named_parameters():
        if f"adam.m.{name}" in tensors:
            opt.state[p] = {
                "step": tensors[f"adam.step.{name}"].reshape(()),
                "exp_avg": tensors[f"adam.m.{name}"].contiguous(memory_format=torch.preserve_format),
                "exp_avg_sq": tensors[f"adam.v.{name}"],
            }
    return model, opt, int(meta["step"]), float(meta["seconds"])
