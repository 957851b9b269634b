"""Small builders for catalog rows, so each test states only what it is about."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from aic_worker.catalog.codec_models import register_model
from aic_worker.catalog.models import Source
from aic_worker.catalog.sources import record_source

MTIME = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def add_source(session: Session) -> Callable[..., Source]:
    """Record a source whose content is named by `content`, found at `path`."""

    def add(content: str = "photo", path: str | None = None) -> Source:
        return record_source(
            session,
            path=path or f"/watched/{content}.png",
            folder="/watched",
            sha256=sha(content),
            size=3_000,
            mtime=MTIME,
            width=40,
            height=25,
            mode="RGB",
        )

    return add


@pytest.fixture
def model_id(session: Session) -> str:
    """A registered default codec model."""
    model = register_model(session, sha("weights v1"), "/models/v1.safetensors", make_default=True)
    session.commit()
    return model.id
