"""Which codec model a new job uses, and where a job's model's weights are. Torch-free.

A `.aic` file names its model by the weights' sha256 (DESIGN.md, invariant 4), so jobs name
models the same way and the catalog records every model a job or an archive uses.
Order for new jobs: `AIC_MODEL` when set, else the catalog's default model, else the
weights shipped in the package.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from sqlalchemy.orm import Session

from aic_worker.catalog.codec_models import default_model, register_model
from aic_worker.catalog.models import CodecModel
from aic_worker.store.archive import file_sha256

SHIPPED_DIR = Path(__file__).resolve().parent / "codec" / "models"
SHIPPED_MODEL = SHIPPED_DIR / "default.safetensors"


class NoModelError(LookupError):
    """No weights to compress with: none set, registered or shipped."""


def model_for_new_jobs(session: Session, env: Mapping[str, str] | None = None) -> CodecModel:
    """The model new compress jobs use, registered in the catalog (the caller commits)."""
    env = os.environ if env is None else env
    current_default = default_model(session)
    if override := env.get("AIC_MODEL"):
        path = Path(override).expanduser().resolve()
        if not path.is_file():
            raise NoModelError(f"AIC_MODEL names {path}, which is not a file")
        return register_model(session, file_sha256(path), str(path), make_default=current_default is None)
    if current_default is not None:
        return current_default
    if SHIPPED_MODEL.is_file():
        return register_model(session, file_sha256(SHIPPED_MODEL), str(SHIPPED_MODEL), make_default=True)
    raise NoModelError("no codec model: set AIC_MODEL or register one with the catalog")


def weights_candidates(
    session: Session, model_id: str, env: Mapping[str, str] | None = None
) -> Iterator[Path]:
    """Files that may hold model `model_id`'s weights, most likely first (the caller checks the sha256)."""
    env = os.environ if env is None else env
    row = session.get(CodecModel, model_id)
    if row is not None:
        yield Path(row.path)
    if override := env.get("AIC_MODEL"):
        yield Path(override).expanduser()
    if (shipped := shipped_weights(model_id)) is not None:
        yield shipped


def find_weights(session: Session, model_id: str) -> tuple[Path | None, list[Path]]:
    """The first of ``weights_candidates`` whose sha256 is ``model_id`` (None: none), and every
    path looked at. A recorded path may hold another model by now: the package's
    ``default.safetensors`` changes with a release whose default model is new."""
    looked = list(dict.fromkeys(weights_candidates(session, model_id)))
    found = next((p for p in looked if p.is_file() and file_sha256(p) == model_id), None)
    return found, looked


def shipped_models() -> dict[str, Path]:
    """Every weights file in the package by model id: the default and each earlier one."""
    found = {file_sha256(path): path for path in SHIPPED_DIR.glob("*.safetensors") if path != SHIPPED_MODEL}
    if SHIPPED_MODEL.is_file():
        found.setdefault(file_sha256(SHIPPED_MODEL), SHIPPED_MODEL)   # an id-named copy is the stabler path
    return found


def shipped_weights(model_id: str) -> Path | None:
    """The package's weights file for model `model_id`, if the package has it.

    Every model the package ever shipped as its default stays in it, named by its id,
    so archives written by an older release still decode (DESIGN.md, invariant 4).
    """
    named = SHIPPED_DIR / f"{model_id}.safetensors"
    if named.is_file():
        return named
    if SHIPPED_MODEL.is_file() and file_sha256(SHIPPED_MODEL) == model_id:
        return SHIPPED_MODEL
    return None
