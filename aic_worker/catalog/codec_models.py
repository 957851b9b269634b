"""The codec models the catalog knows: their weights' sha256, where the weights are, the default.

A `.aic` file names its model by that sha256 (DESIGN.md, invariant 4), so a model that any
archive version uses stays: remove_model() refuses, and the foreign keys (ON DELETE
RESTRICT) refuse whatever gets past it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from aic_worker.catalog.models import ArchiveVersion, CodecModel, Job, utcnow
from aic_worker.catalog.upsert import insert_if_absent


class ModelInUseError(RuntimeError):
    """The model is still needed to decode an archive version or to run a job."""


def register_model(
    session: Session, model_id: str, path: str, *, make_default: bool = False, now: datetime | None = None
) -> CodecModel:
    """Record weights with sha256 `model_id` at `path` (idempotent; a known model's path is updated)."""
    if not insert_if_absent(
        session,
        CodecModel,
        {"id": model_id, "path": path, "created_at": now or utcnow(), "is_default": False},
        key=["id"],
    ):
        session.execute(update(CodecModel).where(CodecModel.id == model_id).values(path=path))
    if make_default:
        set_default_model(session, model_id)
    return session.scalars(select(CodecModel).where(CodecModel.id == model_id)).one()


def set_default_model(session: Session, model_id: str) -> None:
    """Make `model_id` the model new compress jobs use."""
    if session.get(CodecModel, model_id) is None:
        raise LookupError(f"unknown model {model_id}")
    session.execute(update(CodecModel).where(CodecModel.is_default).values(is_default=False))
    session.execute(update(CodecModel).where(CodecModel.id == model_id).values(is_default=True))


def default_model(session: Session) -> CodecModel | None:
    """The model new compress jobs use, if one is set."""
    return session.scalars(select(CodecModel).where(CodecModel.is_default)).one_or_none()


def remove_model(session: Session, model_id: str) -> None:
    """Forget a model no archive version or job refers to."""
    model = session.get(CodecModel, model_id)
    if model is None:
        raise LookupError(f"unknown model {model_id}")
    in_use = session.scalar(
        select(exists().where(ArchiveVersion.model_id == model_id) | exists().where(Job.model_id == model_id))
    )
    if in_use:
        raise ModelInUseError(f"model {model_id} is used by archive versions or jobs")
    session.delete(model)
    session.flush()
