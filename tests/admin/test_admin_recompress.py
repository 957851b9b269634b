"""`aic-admin recompress` in this process (--local): from originals, by truncation, refusals."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from aic_worker.catalog import lease
from aic_worker.catalog.models import ArchiveVersion, Job, JobKind, JobState
from aic_worker.codec import bitstream
from tests.admin.conftest import ArchiveEnv
from tests.conftest import RATIO, session_on, write_photos


@dataclass(frozen=True)
class Version:
    id: int
    path: str
    bytes: int
    target_ratio: float
    achieved_ratio: float
    model_id: str
    superseded_by: int | None
    reference_version_id: int | None
    removed: bool


def groups(version: Version) -> int:
    return len(bitstream.unpack(Path(version.path).read_bytes()).groups)


def versions(engine: Engine) -> dict[int, list[Version]]:
    """Each source's archive versions, oldest first."""
    with session_on(engine) as session:
        found: dict[int, list[Version]] = {}
        for v in session.scalars(select(ArchiveVersion).order_by(ArchiveVersion.id)):
            found.setdefault(v.source_id, []).append(
                Version(v.id, v.path, v.bytes, v.target_ratio, v.achieved_ratio, v.model_id, v.superseded_by,
                        v.reference_version_id, v.removed_at is not None)
            )
        return found


def test_recompress_from_originals_and_from_the_stored_version(archive_env: ArchiveEnv) -> None:
    env = archive_env
    photos = write_photos(env.inbox, 3, size=128)
    ids = env.archived(photos)
    photos[2].unlink()  # its original gone: the stored version is decoded and encoded again
    before = versions(env.engine)

    code, out = env.admin("recompress", "--ratio", "64", "--all", "--dry-run", "--json")
    plan = json.loads(out)
    assert code == 0 and plan["dry_run"] and plan["selected"] == 3
    assert {i["id"]: i["action"] for i in plan["items"]} == dict(
        zip(ids, ["encode", "encode", "reencode"], strict=True)
    )
    assert plan["bytes_saved_at_least"] == sum(
        i["bytes_before"] - i["bytes_after_at_most"] for i in plan["items"]
    )
    assert plan["bytes_saved_at_least"] > 0
    assert versions(env.engine) == before  # a dry run changes nothing
    code, out = env.admin("recompress", "--ratio", "64", "--all", "--dry-run")
    assert code == 0 and "would save" in out and "reencode" in out
    code, out = env.admin("recompress", "--ratio", "64", "--all", "--method", "truncate", "--dry-run",
                          "--json")
    assert [i["action"] for i in json.loads(out)["items"]] == ["truncate"] * 3  # the method per file

    code, out = env.admin("recompress", "--ratio", "64", "--all", "--local", "--json")
    report = json.loads(out)
    assert code == 0 and report["done"] == 3 and report["failed"] == 0
    after = versions(env.engine)
    assert report["bytes_saved"] == sum(before[s][0].bytes - after[s][-1].bytes for s in ids) > 0
    for source_id in ids:
        old, new = after[source_id]
        assert old.superseded_by == new.id and new.superseded_by is None
        assert new.target_ratio == 64 and new.achieved_ratio >= 64 and new.model_id == old.model_id
        assert old.path != new.path and old.removed and not Path(old.path).exists()  # the space is freed
        assert new.reference_version_id == (old.id if source_id == ids[2] else None)

    code, out = env.admin("recompress", "--ratio", "64", "--all", "--local", "--json")
    again = json.loads(out)
    assert code == 0 and again["skipped"] == 3 and again["done"] == 0
    assert versions(env.engine) == after


def test_truncation_as_asked_keep_versions_and_real_bytes_freed(archive_env: ArchiveEnv) -> None:
    env = archive_env
    photos = write_photos(env.inbox, 2, size=128)
    ids = env.archived(photos)
    photos[1].unlink()
    code, out = env.admin("recompress", "--ratio", "48", "--all", "--method", "truncate", "--keep-versions",
                          "2", "--local", "--json")
    report = json.loads(out)
    assert code == 0 and report["to_truncate"] == 2 and report["done"] == 2
    assert report["bytes_saved"] == -sum(v[-1].bytes for v in versions(env.engine).values())  # both kept
    for source_id, (old, new) in versions(env.engine).items():
        assert not old.removed and Path(old.path).exists()
        assert new.reference_version_id == (old.id if source_id == ids[1] else None)  # vs the original
        assert groups(new) < groups(old)  # cut down, not encoded again

    higher = 1.5 * max(v[-1].achieved_ratio for v in versions(env.engine).values())  # past a truncation's
    code, out = env.admin("recompress", "--ratio", f"{higher:.1f}", "--all", "--keep-versions", "1",
                          "--local", "--json")  # without it, the 2 asked above
    report = json.loads(out)
    assert code == 0 and report["to_encode"] == 1 and report["to_reencode"] == 1
    after = versions(env.engine).values()
    assert report["bytes_saved"] == sum(v[0].bytes + v[1].bytes - v[2].bytes for v in after) > 0
    assert all(v[0].removed and v[1].removed and not Path(v[0].path).exists() for v in after)
    assert env.admin("recompress", "--ratio", "64", "--all", "--keep-versions", "0")[0] == 2


def test_a_lower_ratio_without_the_original_is_refused(archive_env: ArchiveEnv) -> None:
    env = archive_env
    [kept, gone] = write_photos(env.inbox, 2)
    ids = env.archived([kept, gone], ratio=32)
    gone.unlink()

    code, out = env.admin("recompress", "--ratio", "24", "--id", *map(str, ids), "--local", "--json")
    report = json.loads(out)
    assert code == 1 and report["refused"] == 1 and report["done"] == 1
    refused = next(i for i in report["items"] if i["action"] == "refuse")
    assert (
        refused["id"] == ids[1] and "original is gone" in refused["why"] and "higher ratio" in refused["why"]
    )
    with session_on(env.engine) as session:
        jobs = session.scalars(select(Job.source_id).where(Job.kind == JobKind.RECOMPRESS)).all()
        assert jobs == [ids[0]]  # no job for the refused one
        assert session.scalar(select(func.count()).select_from(ArchiveVersion)) == 3
    code, out = env.admin("recompress", "--ratio", "24", "--id", str(ids[1]), "--local")
    assert code == 1 and "refused" in out and "original is gone" in out


def test_recompress_needs_a_selection_and_a_sane_ratio(archive_env: ArchiveEnv) -> None:
    assert archive_env.admin("recompress", "--ratio", "64")[0] == 2
    assert archive_env.admin("recompress", "--ratio", "0.5", "--all")[0] == 2
    assert archive_env.admin("recompress", "--all")[0] == 2
    assert (
        archive_env.admin("recompress", "--ratio", "64", "--all", "--local")[0] == 0
    )  # nothing archived yet
    assert RATIO < 64


def test_local_jobs_are_held_from_the_start_so_a_running_daemon_cannot_take_them(
    archive_env: ArchiveEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`recompress --local` while the daemon runs: the moment its jobs are committed, the
    daemon's worker claims every recompress job it can (as its reaper and a free worker would)."""
    env = archive_env
    ids = env.archived(write_photos(env.inbox, 2, size=96))
    daemon = lease.new_owner()
    taken: list[int] = []

    def daemon_claims(session: Session) -> None:
        if taken or session.bind is env.engine:  # once; and not at the daemon's own commit
            return
        with session_on(env.engine) as other, other.begin():
            if not other.scalar(select(func.count()).where(Job.kind == JobKind.RECOMPRESS)):
                return  # the command's jobs are not committed yet
            while job := lease.claim(other, daemon, kinds=[JobKind.RECOMPRESS]):
                taken.append(job.id)
        taken.append(0)  # looked, right after the jobs were committed

    event.listen(Session, "after_commit", daemon_claims)
    try:
        code, out = env.admin("recompress", "--ratio", "64", "--all", "--local", "--json")
    finally:
        event.remove(Session, "after_commit", daemon_claims)
    report = json.loads(out)
    assert taken == [0], "the daemon took jobs the local run had created"
    assert (code, report["done"], report["failed"]) == (0, 2, 0), report["failures"]
    with session_on(env.engine) as session:
        jobs = session.scalars(select(Job).where(Job.kind == JobKind.RECOMPRESS)).all()
    assert [(j.state, j.attempts) for j in jobs] == [(JobState.DONE, 1)] * 2
    assert {s: len(v) for s, v in versions(env.engine).items()} == dict.fromkeys(ids, 2)
