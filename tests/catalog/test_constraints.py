"""The database itself refuses what would break the catalog's rules, whoever writes to it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aic_worker.catalog.codec_models import ModelInUseError, register_model, remove_model
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import ArchiveVersion, CodecModel, Job, JobKind, Source, SourcePath
from aic_worker.catalog.sources import record_archive_version
from tests.catalog.conftest import MTIME, sha

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _version(source_id: int, model_id: str, path: str) -> ArchiveVersion:
    return ArchiveVersion(
        source_id=source_id,
        path=path,
        bytes=100,
        sha256=sha(path),
        target_ratio=10,
        achieved_ratio=10.2,
        model_id=model_id,
        psnr=30.0,
        ms_ssim=0.95,
    )


def _rejects(session: Session, row: object) -> None:
    session.add(row)
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_the_same_compress_job_cannot_exist_twice(
    session: Session, add_source: Callable[..., Source], model_id: str
) -> None:
    source = add_source()
    session.add(Job(kind=JobKind.COMPRESS, source_id=source.id, target_ratio=12, model_id=model_id))
    session.commit()
    _rejects(session, Job(kind=JobKind.COMPRESS, source_id=source.id, target_ratio=12, model_id=model_id))


def test_enqueueing_the_same_compress_job_returns_the_first(
    session: Session, add_source: Callable[..., Source], model_id: str
) -> None:
    source = add_source()
    first, created = enqueue_job(session, JobKind.COMPRESS, source.id, target_ratio=12, model_id=model_id)
    session.commit()
    assert created
    again, created_again = enqueue_job(
        session, JobKind.COMPRESS, source.id, target_ratio=12.00001, model_id=model_id
    )
    assert (again.id, created_again) == (first.id, False)
    other, created_other = enqueue_job(
        session, JobKind.COMPRESS, source.id, target_ratio=16, model_id=model_id
    )
    assert created_other and other.id != first.id
    session.commit()
    assert session.scalar(sa.select(sa.func.count()).select_from(Job)) == 2


def test_other_kinds_are_deduplicated_while_active(
    session: Session, add_source: Callable[..., Source], model_id: str
) -> None:
    source = add_source()
    verify, created = enqueue_job(session, JobKind.VERIFY, source.id)
    assert created
    assert enqueue_job(session, JobKind.VERIFY, source.id) == (verify, False)
    _, created_with_other_params = enqueue_job(session, JobKind.VERIFY, source.id, parameters={"deep": True})
    assert created_with_other_params
    verify.state = "done"
    session.flush()
    _, created_after_done = enqueue_job(session, JobKind.VERIFY, source.id)
    assert created_after_done  # verifying again later is new work


def test_a_compress_job_names_its_ratio_and_model(
    session: Session, add_source: Callable[..., Source]
) -> None:
    source = add_source()
    session.commit()
    _rejects(session, Job(kind=JobKind.COMPRESS, source_id=source.id, target_ratio=12, model_id=None))


def test_job_states_and_kinds_are_checked(
    session: Session, add_source: Callable[..., Source], model_id: str
) -> None:
    job, _ = enqueue_job(session, JobKind.COMPRESS, add_source().id, target_ratio=8, model_id=model_id)
    session.commit()
    for column in ("state", "kind"):
        with pytest.raises(IntegrityError):
            session.execute(sa.text(f"UPDATE jobs SET {column} = 'bogus' WHERE id = :id"), {"id": job.id})
        session.rollback()


def test_one_current_archive_version_per_source(
    session: Session, add_source: Callable[..., Source], model_id: str
) -> None:
    source = add_source()
    session.add(_version(source.id, model_id, "/archive/a.aic"))
    session.commit()
    _rejects(session, _version(source.id, model_id, "/archive/b.aic"))


def test_content_and_paths_are_unique(session: Session, add_source: Callable[..., Source]) -> None:
    source = add_source("photo", "/watched/photo.png")
    session.commit()
    _rejects(session, Source(sha256=sha("photo"), size=1))
    _rejects(
        session, SourcePath(source_id=source.id, folder="/watched", path="/watched/photo.png", mtime=MTIME)
    )


def test_rows_must_refer_to_existing_rows(session: Session, model_id: str) -> None:
    _rejects(session, _version(source_id=999, model_id=model_id, path="/archive/x.aic"))


def test_a_model_in_use_cannot_be_removed(
    session: Session, add_source: Callable[..., Source], model_id: str
) -> None:
    source = add_source()
    record_archive_version(
        session,
        source_id=source.id,
        path="/archive/a.aic",
        bytes=100,
        sha256=sha("aic"),
        target_ratio=10,
        achieved_ratio=10.1,
        model_id=model_id,
        psnr=30.0,
        ms_ssim=0.95,
    )
    session.commit()
    with pytest.raises(ModelInUseError):
        remove_model(session, model_id)
    with pytest.raises(IntegrityError):  # nor behind the catalog's back
        session.execute(sa.text("DELETE FROM models WHERE id = :id"), {"id": model_id})
    session.rollback()
    unused = register_model(session, sha("weights v2"), "/models/v2.safetensors")
    remove_model(session, unused.id)
    session.commit()
    assert session.get(CodecModel, model_id) is not None
    assert session.get(CodecModel, unused.id) is None


def test_only_one_default_model(session: Session, model_id: str) -> None:
    _rejects(session, CodecModel(id=sha("weights v2"), path="/models/v2.safetensors", is_default=True))
