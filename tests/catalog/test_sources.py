"""Recording sources, their paths, archive versions and codec models."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from aic_worker.catalog.codec_models import default_model, register_model, set_default_model
from aic_worker.catalog.models import ArchiveVersion, Source, SourcePath, SourceState
from aic_worker.catalog.sources import (
    current_version,
    find_path,
    find_source,
    mark_path_removed,
    quarantine_source,
    record_archive_version,
    record_source,
)
from tests.catalog.conftest import sha


def test_the_same_content_under_two_paths_is_one_source(
    session: Session, add_source: Callable[..., Source]
) -> None:
    first = add_source("photo", "/watched/a/photo.png")
    second = add_source("photo", "/watched/b/copy.png")
    again = add_source("photo", "/watched/a/photo.png")  # a second watcher event
    session.commit()
    assert first.id == second.id == again.id
    assert session.scalars(select(Source)).all() == [first]
    assert sorted(p.path for p in first.paths) == ["/watched/a/photo.png", "/watched/b/copy.png"]
    assert find_source(session, sha("photo")) == first
    assert find_source(session, sha("other")) is None


def test_a_path_whose_file_was_replaced_moves_to_the_new_content(
    session: Session, add_source: Callable[..., Source]
) -> None:
    old = add_source("old photo", "/watched/photo.png")
    mark_path_removed(session, "/watched/photo.png")
    new = add_source("new photo", "/watched/photo.png")
    session.commit()
    path = find_path(session, "/watched/photo.png")
    assert path is not None and new.id != old.id
    assert (path.source_id, path.removed_at) == (new.id, None)
    assert session.scalars(select(SourcePath).where(SourcePath.source_id == old.id)).all() == []


def test_quarantined_content_is_forgotten_when_its_only_path_holds_other_content(
    session: Session, add_source: Callable[..., Source]
) -> None:
    """A half-written file quarantined, then complete: only the complete content remains."""
    partial = add_source("half a photo", "/watched/photo.png")
    quarantine_source(session, partial.id, "does not decode as an image: truncated")
    kept = add_source("broken", "/watched/broken.png")  # quarantined, and still at another path
    quarantine_source(session, kept.id, "does not decode as an image: not an image")
    add_source("broken", "/watched/broken copy.png")
    session.commit()
    partial_id, kept_id = partial.id, kept.id
    session.expunge_all()

    complete = add_source("photo", "/watched/photo.png")
    add_source("photo", "/watched/broken.png")  # one copy of the broken content replaced
    session.commit()
    assert session.get(Source, partial_id) is None
    assert session.get(Source, kept_id).state is SourceState.QUARANTINED  # /watched/broken copy.png
    assert {p.path for p in complete.paths} == {"/watched/photo.png", "/watched/broken.png"}


def test_source_details_are_kept(session: Session) -> None:
    mtime = datetime(2020, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)
    source = record_source(
        session,
        path="/w/x.tif",
        folder="/w",
        sha256=sha("x"),
        size=12345,
        mtime=mtime,
        width=640,
        height=480,
        mode="RGBA",
    )
    session.commit()
    session.expunge_all()
    stored = session.get(Source, source.id)
    assert (stored.size, stored.width, stored.height, stored.mode, stored.state) == (
        12345,
        640,
        480,
        "RGBA",
        "new",
    )
    assert stored.paths[0].mtime == mtime and stored.paths[0].folder == "/w"
    assert stored.first_seen_at.tzinfo is not None


def test_a_new_archive_version_supersedes_the_current_one(
    session: Session, add_source: Callable[..., Source], model_id: str
) -> None:
    source = add_source()
    assert current_version(session, source.id) is None

    def archive(path: str, ratio: float) -> ArchiveVersion:
        return record_archive_version(
            session,
            source_id=source.id,
            path=path,
            bytes=3_000 // int(ratio),
            sha256=sha(path),
            target_ratio=ratio,
            achieved_ratio=ratio + 0.1,
            model_id=model_id,
            psnr=32.0,
            ms_ssim=0.97,
        )

    first = archive("/archive/photo.r8.aic", 8)
    session.commit()
    second = archive("/archive/photo.r16.aic", 16)
    third = archive("/archive/photo.r32.aic", 32)
    session.commit()
    session.expunge_all()
    versions = session.scalars(select(ArchiveVersion).order_by(ArchiveVersion.id)).all()
    assert [v.superseded_by for v in versions] == [second.id, third.id, None]
    assert current_version(session, source.id).id == third.id
    assert session.get(Source, source.id).state is SourceState.ARCHIVED
    assert versions[0].id == first.id and versions[0].target_ratio == 8


def test_quarantined_content_says_why(session: Session, add_source: Callable[..., Source]) -> None:
    source = add_source()
    quarantine_source(session, source.id, "not an image: truncated PNG")
    session.commit()
    session.expunge_all()
    stored = session.get(Source, source.id)
    assert (stored.state, stored.reason) == (SourceState.QUARANTINED, "not an image: truncated PNG")


def test_models_are_registered_idempotently_with_one_default(session: Session) -> None:
    assert default_model(session) is None
    v1 = register_model(session, sha("v1"), "/models/v1.safetensors", make_default=True)
    v2 = register_model(session, sha("v2"), "/models/v2.safetensors")
    moved = register_model(session, sha("v2"), "/srv/models/v2.safetensors")
    session.commit()
    assert default_model(session).id == v1.id
    assert moved.id == v2.id and moved.path == "/srv/models/v2.safetensors"
    set_default_model(session, v2.id)
    session.commit()
    assert default_model(session).id == v2.id
    assert not session.get(type(v1), v1.id).is_default
