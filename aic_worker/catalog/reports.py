"""What the catalog says about the archive, as JSON-able dicts: one implementation behind
`aic-admin ls | show | stats | quarantine | status --json` and the dashboard's JSON API.

Torch-free. Each function takes a Session and returns plain dicts whose keys are the ones
docs/cli.md specifies for the matching `--json` output (keys are only ever added).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Result,
    RowMapping,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    type_coerce,
    union,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from aic_worker.catalog.models import (
    ArchiveVersion,
    FolderTotals,
    Job,
    JobState,
    Source,
    SourcePath,
    SourceState,
    utcnow,
)
from aic_worker.catalog.overview import (
    CURRENT,
    LATEST,
    PRIMARY,
    STATES,
    candidates,
    joined,
    joined_whole,
    reason_column,
    state_column,
    state_is,
)

RATIO_BUCKETS = (8, 16, 32, 64, 128, 256)  # histogram edges of achieved ratios
RECENT_FAILURES = 10
THROUGHPUT_WINDOWS = (1, 5, 60)  # minutes
STREAM_BATCH = 5000  # rows fetched at a time when listing every source


ORIGINAL = "original"  # quality_reference: PSNR and MS-SSIM measured against the original


def quality_reference(version: Any) -> ColumnElement[str | None]:
    """What `version`'s PSNR and MS-SSIM were measured against, as SQL: "original", or "version N"
    for a re-encode made without the original (issue #15), whose figures say nothing about
    the original; null without a figure (no version, or a passthrough: the original's bytes)."""
    reference = version.reference_version_id
    return case(
        (version.psnr.is_(None), None),
        (reference.is_(None), literal(ORIGINAL)),
        else_=literal("version ", String) + cast(reference, String),
    )


def _record_columns() -> list[ColumnElement[Any]]:
    """The `ls --json` keys as SQL columns: one row per source, no ORM object."""
    unfinished = and_(LATEST.state != JobState.DONE, LATEST.target_ratio.is_not(None))
    return [
        Source.id.label("id"),
        PRIMARY.path.label("source_path"),
        PRIMARY.folder.label("folder"),
        state_column().label("state"),
        case((unfinished, LATEST.target_ratio), else_=CURRENT.target_ratio).label("target_ratio"),
        CURRENT.achieved_ratio.label("achieved_ratio"),
        CURRENT.path.label("archive_path"),
        CURRENT.bytes.label("archive_bytes"),
        CURRENT.psnr.label("psnr"),
        CURRENT.ms_ssim.label("ms_ssim"),
        CURRENT.model_id.label("model_id"),
        CURRENT.created_at.label("archived_at"),
        Source.size.label("source_bytes"),
        Source.sha256.label("sha256"),
        Source.width.label("width"),
        Source.height.label("height"),
        reason_column().label("reason"),
        type_coerce(CURRENT.kind, String).label("kind"),  # its value, not an ArchiveKind
        quality_reference(CURRENT).label("quality_reference"),
        CURRENT.reference_version_id.label("reference_version_id"),
    ]


def _where(
    conditions: Iterable[ColumnElement[bool]], state: str | None, q: str | None
) -> list[ColumnElement[bool]]:
    found = [*conditions]
    if state is not None:
        found += state_is(state)
    if q:
        # The exact test on the primary path, and beside it the sources with any path that holds
        # q: a set the trigram index finds on PostgreSQL (0005), so the exact test runs on those only.
        found.append(PRIMARY.path.icontains(q, autoescape=True))
        holding = select(SourcePath.source_id).where(SourcePath.path.icontains(q, autoescape=True))
        found.append(Source.id.in_(holding))
    return found


def _dicts(result: Result[Any]) -> Iterator[dict[str, Any]]:
    """Rows as dicts. Statements run as Core, on session.connection(): the ORM's handling of
    rows took most of a listing's time."""
    keys = list(result.keys())
    for row in result:
        yield dict(zip(keys, row, strict=True))


def source_page(
    session: Session,
    *,
    conditions: Iterable[ColumnElement[bool]] = (),
    state: str | None = None,
    q: str | None = None,
    limit: int | None = 100,
    offset: int = 0,
    after_id: int | None = None,
) -> list[dict[str, Any]]:
    """Sources in the `ls --json` schema, in id order: `limit` of them (None: all) from
    `offset`, or after source `after_id` (a page that costs the same however deep it is).

    `conditions` are WHERE clauses on Source and CURRENT (Selection.conditions()), `state`
    one of overview.STATES, `q` a case-insensitive substring of the source's path.
    """
    page = joined(select(Source.id)).where(*_where(conditions, state, q)).order_by(Source.id)
    if after_id is not None:
        page = page.where(Source.id > after_id)
    ids = session.scalars(page.limit(limit).offset(offset or None)).all()
    # Then the page's rows by id: PostgreSQL joins a known handful of ids by index lookups,
    # where one statement with LIMIT had it merge-join whole indexes from their start.
    records = joined(select(*_record_columns())).where(Source.id.in_(ids)).order_by(Source.id)
    return list(_dicts(session.connection().execute(records))) if ids else []


def iter_source_records(
    session: Session,
    *,
    conditions: Iterable[ColumnElement[bool]] = (),
    state: str | None = None,
    q: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Every selected source in the `ls --json` schema, in id order, in constant memory.

    One statement, its rows fetched STREAM_BATCH at a time (a server-side cursor on
    PostgreSQL). It reads one snapshot in a read-only transaction, which holds no lock a
    writer waits for (SQLite: WAL and a deferred BEGIN, engine.reading).
    """
    query = joined_whole(select(*_record_columns())).where(*_where(conditions, state, q)).order_by(Source.id)
    yield from _dicts(session.connection().execute(query.execution_options(yield_per=STREAM_BATCH)))


def source_details(session: Session, source_id: int) -> dict[str, Any] | None:
    """The `show --json` document of one source, or None if there is no such source."""
    found = source_page(session, conditions=[Source.id == source_id], limit=1)
    if not found:
        return None
    paths = session.scalars(
        select(SourcePath).where(SourcePath.source_id == source_id).order_by(SourcePath.id)
    )
    versions = session.scalars(
        select(ArchiveVersion).where(ArchiveVersion.source_id == source_id).order_by(ArchiveVersion.id)
    )
    jobs = session.scalars(select(Job).where(Job.source_id == source_id).order_by(Job.id))
    return {
        **found[0],
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
                "kind": v.kind.value,
                "removed_at": v.removed_at,
                "damaged_at": v.damaged_at,
                "reference_version_id": v.reference_version_id,
                "quality_reference": _reference_text(v),
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


def _reference_text(version: ArchiveVersion) -> str | None:
    """quality_reference() for one loaded version."""
    if version.psnr is None:
        return None
    return ORIGINAL if version.reference_version_id is None else f"version {version.reference_version_id}"


def _current(column: InstrumentedAttribute[Any]) -> list[ColumnElement[bool]]:
    """Current archive versions that have a value in `column` (a passthrough has no PSNR)."""
    return [ArchiveVersion.superseded_by.is_(None), column.is_not(None)]


def _against(original: bool) -> list[ColumnElement[bool]]:
    """Versions whose quality was measured against the original, or against an earlier version."""
    reference = ArchiveVersion.reference_version_id
    return [reference.is_(None) if original else reference.is_not(None)]


def distribution(
    session: Session, column: InstrumentedAttribute[Any], *where: ColumnElement[bool]
) -> dict[str, float] | None:
    """min, nearest-rank p10, median and p90, max and mean of `column` over current versions
    (those of them that meet `where`).

    Each quantile is one row read at its rank from an index on the column (models.py), so
    no query sorts or loads the values; ranks past the middle are read from the top end,
    which skips the fewer entries (max reads one, where it read them all).
    """
    chosen = [*_current(column), *where]
    n, mean = session.execute(select(func.count(column), func.avg(column)).where(*chosen)).one()
    if not n:
        return None

    def at(q: float) -> float:
        rank = min(n - 1, max(0, math.ceil(q * n) - 1))
        ordered = select(column).where(*chosen).limit(1)
        if rank > (n - 1) // 2:
            return session.scalar(ordered.order_by(column.desc()).offset(n - 1 - rank))
        return session.scalar(ordered.order_by(column).offset(rank))

    return {
        "min": at(0),
        "p10": at(0.1),
        "median": at(0.5),
        "p90": at(0.9),
        "max": at(1),
        "mean": float(mean),
    }


def _histogram(session: Session) -> list[dict[str, Any]]:
    """Current versions per achieved-ratio bucket: one range count on the index per bucket."""
    ratio = ArchiveVersion.achieved_ratio
    buckets = []
    for low, high in itertools.pairwise([0, *RATIO_BUCKETS, None]):
        where = [*_current(ratio), ratio >= low]
        if high is not None:
            where.append(ratio < high)
        buckets.append({"from": low, "to": high, "files": session.scalar(select(func.count()).where(*where))})
    return buckets


def _total(column: ColumnElement[int | None]) -> ColumnElement[int]:
    """SUM of byte counts as an integer (PostgreSQL sums bigint to numeric), 0 when none."""
    return cast(func.coalesce(func.sum(column), 0), BigInteger)


def _totals(groups: Iterable[RowMapping]) -> dict[str, Any]:
    """Totals over rows of folder_groups(), as stats prints them (raw: raw RGB bytes, exact)."""
    files = bytes_in = bytes_out = sources = 0
    raw = 0
    for group in groups:
        sources += group["sources"]
        files += group["files"]
        bytes_in += group["bytes_in"]
        bytes_out += group["bytes_out"]
        raw += group["raw"]
    return {
        "files": files,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "space_saved": bytes_in - bytes_out,
        "overall_ratio": raw / bytes_out if bytes_out else None,
        "sources": sources,
    }


def _state_counts(session: Session, sources: int) -> dict[str, int]:
    """Sources per state: the few that may be other than done counted exactly, the rest done."""
    unusual = union(*(found for state in STATES for found in candidates(state)))
    state = state_column().label("state")
    counts = dict.fromkeys(STATES, 0)
    counts.update(
        session.execute(
            joined(select(state, func.count()).select_from(Source))
            .where(Source.id.in_(unusual))
            .group_by(state)
        ).all()
    )
    counts[JobState.DONE.value] += sources - sum(counts.values())
    return counts


def folder_groups(session: Session) -> list[RowMapping]:
    """The by-folder figures, read from the totals the database keeps (revision 0006): a few
    rows, however large the archive; a folder left without sources is not shown."""
    figures = [
        _total(getattr(FolderTotals, name)).label(name)
        for name in ("sources", "files", "bytes_in", "bytes_out", "raw", "bytes_on_disk")
    ]
    return list(
        session.execute(
            select(FolderTotals.folder, *figures)
            .group_by(FolderTotals.folder)
            .having(func.sum(FolderTotals.sources) > 0)
        ).mappings()
    )


def stats_report(session: Session) -> dict[str, Any]:
    """What `aic-admin stats --json` prints: every figure summed by the database.

    The sums by folder (and `bytes_on_disk`, every version whose file is still kept,
    superseded or not) come from folder_totals, which triggers keep (revision 0006; before,
    a pass over every source: 2 to 3.5 s at a million); states are counted on the few
    sources that may be other than done (overview.candidates); the distributions read the
    ratio and PSNR indexes (`psnr` over versions measured against their original,
    `psnr_vs_previous_version` over re-encodes measured against the version they were made from).
    """
    groups = folder_groups(session)
    totals = _totals(groups)
    return {
        **totals,
        "states": _state_counts(session, totals["sources"]),
        "ratio": distribution(session, ArchiveVersion.achieved_ratio),
        "ratio_histogram": _histogram(session),
        # A re-encode made without the original measured its PSNR against the version it came
        # from: a different yardstick, kept out of the original's figures.
        "psnr": distribution(session, ArchiveVersion.psnr, *_against(original=True)),
        "psnr_vs_previous_version": distribution(session, ArchiveVersion.psnr, *_against(original=False)),
        "folders": [
            {"folder": group["folder"], **_totals([group])}
            for group in sorted(groups, key=lambda group: group["folder"] or "")
        ],
        "bytes_on_disk": sum(group["bytes_on_disk"] for group in groups),
    }


QUARANTINE_PAGE = 100  # quarantined sources, and jobs, in a page by default


def quarantine_cursor(text: str) -> tuple[int, int]:
    """`SOURCE_ID:JOB_ID`, the `next_after` of a quarantine page, as two ids (ValueError if not)."""
    source_id, separator, job_id = text.partition(":")
    if not separator:
        raise ValueError(f"{text!r} is not SOURCE_ID:JOB_ID")
    return int(source_id), int(job_id)


def _quarantined_sources(after: int) -> Select[Any]:
    return (
        joined(select(Source.id, PRIMARY.path.label("source_path"), Source.reason))
        .where(Source.state == SourceState.QUARANTINED, Source.id > after)
        .order_by(Source.id)
    )


def _quarantined_jobs(after: int) -> Select[Any]:
    path = (
        select(SourcePath.path)
        .where(SourcePath.source_id == Job.source_id)
        .order_by(SourcePath.id)
        .limit(1)
        .correlate(Job)
        .scalar_subquery()
    )
    return (
        select(
            Job.id.label("job_id"),
            type_coerce(Job.kind, String).label("kind"),  # its value, not a JobKind
            Job.source_id,
            path.label("source_path"),
            Job.attempts,
            Job.finished_at.label("since"),
            Job.quarantine_reason.label("reason"),
        )
        .where(Job.state == JobState.QUARANTINED, Job.id > after)
        .order_by(Job.id)
    )


def iter_quarantined(session: Session) -> tuple[Iterator[dict[str, Any]], Iterator[dict[str, Any]]]:
    """Every quarantined source, and every quarantined job, in the `quarantine --json` item
    schemas, by id: two streams read STREAM_BATCH rows at a time (`quarantine --all`). The
    sources are read to the end before the jobs' statement runs."""
    options = {"yield_per": STREAM_BATCH}
    connection = session.connection()

    def sources() -> Iterator[dict[str, Any]]:
        yield from _dicts(connection.execute(_quarantined_sources(0).execution_options(**options)))

    def jobs() -> Iterator[dict[str, Any]]:
        yield from _dicts(connection.execute(_quarantined_jobs(0).execution_options(**options)))

    return sources(), jobs()


def quarantine_report(
    session: Session, *, limit: int = QUARANTINE_PAGE, after: tuple[int, int] | None = None
) -> dict[str, Any]:
    """What `aic-admin quarantine --json` prints: a page of quarantined sources and one of
    quarantined jobs, at most `limit` of each by id, after the ids of `after` (the previous
    page's `next_after`), with the totals. Before 0.4.0's fix of 2026-11-30 it listed them all:
    100,000 quarantined jobs took the API 29 s and 24 MB."""
    after_source, after_job = after or (0, 0)
    connection = session.connection()
    sources = list(_dicts(connection.execute(_quarantined_sources(after_source).limit(limit + 1))))
    jobs = list(_dicts(connection.execute(_quarantined_jobs(after_job).limit(limit + 1))))
    more = len(sources) > limit or len(jobs) > limit
    sources, jobs = sources[:limit], jobs[:limit]
    next_after = None
    if more:
        last_source = sources[-1]["id"] if sources else after_source
        last_job = jobs[-1]["job_id"] if jobs else after_job
        next_after = f"{last_source}:{last_job}"
    return {
        "sources": sources,
        "jobs": jobs,
        "source_count": session.scalar(
            select(func.count()).where(Source.state == SourceState.QUARANTINED)
        ),
        "job_count": session.scalar(select(func.count()).where(Job.state == JobState.QUARANTINED)),
        "limit": limit,
        "next_after": next_after,
    }


def status_report(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """The catalog's side of `aic-admin status --json` (the broker's side is added by the CLI)."""
    now = now or utcnow()
    counts = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    running = session.scalars(select(Job).where(Job.state == JobState.RUNNING).order_by(Job.started_at)).all()
    # The latest of each state from ix_jobs_state_updated, merged here: one statement over both
    # states would sort every failed and quarantined job on each call.
    latest = [
        job
        for state in (JobState.FAILED, JobState.QUARANTINED)
        for job in session.scalars(
            select(Job).where(Job.state == state).order_by(Job.updated_at.desc()).limit(RECENT_FAILURES)
        )
    ]
    failures = sorted(latest, key=lambda j: (j.updated_at, j.id), reverse=True)[:RECENT_FAILURES]
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
