"""What the catalog says about the archive, as JSON-able dicts: one implementation behind
`aic-admin ls | show | stats | quarantine | status --json` and the dashboard's JSON API.

Torch-free. Each function takes a Session and returns plain dicts whose keys are the ones
docs/cli.md specifies for the matching `--json` output (keys are only ever added).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from aic_worker.catalog.models import ArchiveVersion, Job, JobState, Source, SourcePath, SourceState, utcnow
from aic_worker.catalog.overview import PRIMARY, STATES, SourceRow, source_rows

RATIO_BUCKETS = (8, 16, 32, 64, 128, 256)  # histogram edges of achieved ratios
RECENT_FAILURES = 10
THROUGHPUT_WINDOWS = (1, 5, 60)  # minutes


def source_record(row: SourceRow) -> dict[str, Any]:
    """One source as `ls --json` prints it."""
    source, version, job = row.source, row.version, row.job
    unfinished = job is not None and job.state is not JobState.DONE
    target = (
        job.target_ratio if unfinished and job.target_ratio else version.target_ratio if version else None
    )
    return {
        "id": source.id,
        "source_path": row.path.path if row.path else None,
        "folder": row.path.folder if row.path else None,
        "state": row.state,
        "target_ratio": target,
        "achieved_ratio": version.achieved_ratio if version else None,
        "archive_path": version.path if version else None,
        "archive_bytes": version.bytes if version else None,
        "psnr": version.psnr if version else None,
        "ms_ssim": version.ms_ssim if version else None,
        "model_id": version.model_id if version else None,
        "archived_at": version.created_at if version else None,
        "source_bytes": source.size,
        "sha256": source.sha256,
        "width": source.width,
        "height": source.height,
        "reason": row.reason,
    }


def iter_source_records(
    session: Session,
    *,
    conditions: Iterable[ColumnElement[bool]] = (),
    state: str | None = None,
    q: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Every selected source in the `ls --json` schema, in id order."""
    found = [*conditions]
    if q:
        found.append(PRIMARY.path.icontains(q, autoescape=True))
    for row in source_rows(session, *found):
        record = source_record(row)
        if state is None or record["state"] == state:
            yield record


def source_page(
    session: Session,
    *,
    conditions: Iterable[ColumnElement[bool]] = (),
    state: str | None = None,
    q: str | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """One page of `iter_source_records` (limit None: all of them)."""
    records = iter_source_records(session, conditions=conditions, state=state, q=q)
    stop = None if limit is None else offset + limit
    return list(itertools.islice(records, offset, stop))


def source_details(session: Session, source_id: int) -> dict[str, Any] | None:
    """The `show --json` document of one source, or None if there is no such source."""
    row = next(source_rows(session, Source.id == source_id), None)
    if row is None:
        return None
    paths = session.scalars(
        select(SourcePath).where(SourcePath.source_id == source_id).order_by(SourcePath.id)
    )
    versions = session.scalars(
        select(ArchiveVersion).where(ArchiveVersion.source_id == source_id).order_by(ArchiveVersion.id)
    )
    jobs = session.scalars(select(Job).where(Job.source_id == source_id).order_by(Job.id))
    return {
        **source_record(row),
        "paths": [
            {"path": p.path, "folder": p.folder, "mtime": p.mtime, "removed_at": p.removed_at} for p in paths
        ],
        "versions": [
            {
                "id": v.id,
                "path": v.path,
                "bytes": v.bytes,
                "target_ratio": v.target_ratio,
                "achieved_ratio": v.achieved_ratio,
                "psnr": v.psnr,
                "ms_ssim": v.ms_ssim,
                "model_id": v.model_id,
                "sha256": v.sha256,
                "created_at": v.created_at,
                "current": v.superseded_by is None,
            }
            for v in versions
        ],
        "jobs": [
            {
                "id": j.id,
                "kind": j.kind.value,
                "state": j.state.value,
                "target_ratio": j.target_ratio,
                "attempts": j.attempts,
                "created_at": j.created_at,
                "finished_at": j.finished_at,
                "error": j.quarantine_reason or j.last_error,
            }
            for j in jobs
        ],
    }


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty sequence."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def distribution(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "p10": _quantile(ordered, 0.1),
        "median": _quantile(ordered, 0.5),
        "p90": _quantile(ordered, 0.9),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


def _histogram(ratios: Sequence[float]) -> list[dict[str, Any]]:
    edges = [0, *RATIO_BUCKETS, None]
    return [
        {"from": low, "to": high, "files": sum(low <= r and (high is None or r < high) for r in ratios)}
        for low, high in itertools.pairwise(edges)
    ]


def _totals(rows: Sequence[SourceRow]) -> dict[str, Any]:
    archived = [r for r in rows if r.version is not None]
    bytes_in = sum(r.source.size for r in archived)
    bytes_out = sum(r.version.bytes for r in archived)
    raw = sum(r.version.achieved_ratio * r.version.bytes for r in archived)
    return {
        "files": len(archived),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "space_saved": bytes_in - bytes_out,
        "overall_ratio": raw / bytes_out if bytes_out else None,
    }


def stats_report(session: Session) -> dict[str, Any]:
    """What `aic-admin stats --json` prints."""
    rows = list(source_rows(session))
    archived = [r for r in rows if r.version is not None]
    ratios = [r.version.achieved_ratio for r in archived]
    by_folder: dict[str | None, list[SourceRow]] = defaultdict(list)
    for row in rows:
        by_folder[row.path.folder if row.path else None].append(row)
    states = dict.fromkeys(STATES, 0)
    for row in rows:
        states[row.state] += 1
    return {
        **_totals(rows),
        "sources": len(rows),
        "states": states,
        "ratio": distribution(ratios),
        "ratio_histogram": _histogram(ratios),
        "psnr": distribution([r.version.psnr for r in archived]),
        "folders": [
            {"folder": folder, **_totals(members), "sources": len(members)}
            for folder, members in sorted(by_folder.items(), key=lambda item: item[0] or "")
        ],
    }


def quarantine_report(session: Session) -> dict[str, Any]:
    """What `aic-admin quarantine --json` prints."""
    sources = [
        {"id": row.source.id, "source_path": row.path.path if row.path else None, "reason": row.source.reason}
        for row in source_rows(session, Source.state == SourceState.QUARANTINED)
    ]
    jobs = session.execute(
        select(Job, SourcePath.path)
        .outerjoin(SourcePath, SourcePath.source_id == Job.source_id)
        .where(Job.state == JobState.QUARANTINED)
        .order_by(Job.id, SourcePath.id)
    ).all()
    seen: dict[int, dict[str, Any]] = {}
    for job, path in jobs:
        seen.setdefault(
            job.id,
            {
                "job_id": job.id,
                "kind": job.kind.value,
                "source_id": job.source_id,
                "source_path": path,
                "attempts": job.attempts,
                "since": job.finished_at,
                "reason": job.quarantine_reason,
            },
        )
    return {"sources": sources, "jobs": list(seen.values())}


def status_report(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """The catalog's side of `aic-admin status --json` (the broker's side is added by the CLI)."""
    now = now or utcnow()
    counts = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    running = session.scalars(select(Job).where(Job.state == JobState.RUNNING).order_by(Job.started_at)).all()
    failures = session.scalars(
        select(Job)
        .where(Job.state.in_((JobState.FAILED, JobState.QUARANTINED)))
        .order_by(Job.updated_at.desc())
        .limit(RECENT_FAILURES)
    ).all()
    throughput = {}
    for minutes in THROUGHPUT_WINDOWS:
        since = now - timedelta(minutes=minutes)
        finished = session.scalar(
            select(func.count()).where(Job.state == JobState.DONE, Job.finished_at >= since)
        )
        throughput[f"{minutes}m"] = round(finished / minutes, 3)
    return {
        "jobs": {state.value: counts.get(state, 0) for state in JobState},
        "running": [
            {"id": j.id, "kind": j.kind.value, "owner": j.lease_owner,
             "lease_expires_at": j.lease_expires_at.isoformat() if j.lease_expires_at else None}
            for j in running
        ],
        "recent_failures": [
            {"id": j.id, "kind": j.kind.value, "state": j.state.value,
             "reason": j.quarantine_reason or j.last_error, "attempts": j.attempts}
            for j in failures
        ],
        "throughput_jobs_per_minute": throughput,
    }
