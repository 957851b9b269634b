"""`/api/v1`: the catalog as JSON, previews, and the writes.

Reads answer with the documents `aic-admin ls | show | stats | quarantine | status --json`
print, from the same functions (catalog/reports.py), so the CLI and the API can't drift
apart (docs/cli.md has the schemas; docs/web.md the routes). Writes need the token
(auth.py) and leave the work to the workers (actions.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from aic_worker.admin.selection import Selection, duration
from aic_worker.catalog.models import ArchiveVersion, JobState, Source, SourcePath
from aic_worker.catalog.overview import STATES
from aic_worker.catalog.reports import (
    QUARANTINE_PAGE,
    quarantine_cursor,
    quarantine_report,
    source_details,
    source_page,
    status_report,
)
from aic_worker.config import WorkerConfig
from aic_worker.jobs.parameters import IfBigger, Method, RecompressParameters
from aic_worker.jobs.queue import answering_workers, queue_depth
from aic_worker.store.policy import Policy
from aic_worker.store.retention import DEFAULT_KEEP_VERSIONS
from aic_worker.web import actions
from aic_worker.web.auth import require_token
from aic_worker.web.dependencies import catalog_session, writing_session
from aic_worker.web.headers import FILE_POLICY
from aic_worker.web.originals import open_original
from aic_worker.web.preview import MAX_WIDTH, MIN_WIDTH, PreviewError

# response_model=None on the routes: FastAPI then encodes datetimes with isoformat(), as the CLI's
# --json does, instead of pydantic's "Z" spelling.
router = APIRouter(prefix="/api/v1", tags=["api"])
Catalog = Annotated[Session, Depends(catalog_session)]
Writing = Annotated[Session, Depends(writing_session)]
MAX_PAGE = 1000
STATE_PATTERN = f"^({'|'.join(STATES)})$"
WORKER_PING_SECONDS = 1.0


def _not_found(source_id: int) -> HTTPException:
    return HTTPException(404, f"no source with id {source_id}")


@router.get("/stats", response_model=None)
def stats(request: Request, response: Response) -> dict[str, Any]:
    """The `aic-admin stats --json` document, at most a minute old: the `Age` header says how old
    in seconds (kept_report.py)."""
    report, age = request.app.state.stats.get()
    response.headers["Age"] = str(int(age))
    return report


@router.get("/sources", response_model=None)
def sources(
    session: Catalog,
    state: Annotated[
        str | None, Query(pattern=STATE_PATTERN, description="one of " + ", ".join(STATES))
    ] = None,
    folder: str | None = None,
    q: Annotated[str | None, Query(description="part of the source's path")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    after: Annotated[
        int | None, Query(description="sources after this id: deep pages at the cost of the first")
    ] = None,
) -> dict[str, Any]:
    """One page of sources, each in the `aic-admin ls --json` schema, by id; `next_offset` is null
    on the last page."""
    selection = Selection(folder=Path(folder).expanduser().resolve() if folder else None)
    items = source_page(
        session,
        conditions=selection.conditions(),
        state=state,
        q=q,
        limit=limit + 1,
        offset=offset,
        after_id=after,
    )
    return {
        "items": items[:limit],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if len(items) > limit else None,
    }


@router.get("/sources/{source_id}", response_model=None)
def source(session: Catalog, source_id: int) -> dict[str, Any]:
    """The `aic-admin show ID --json` document."""
    found = source_details(session, source_id)
    if found is None:
        raise _not_found(source_id)
    return found


@router.get("/sources/{source_id}/preview.png", response_class=Response)
def preview(
    request: Request,
    session: Catalog,
    source_id: int,
    version: Annotated[int | None, Query(description="an archive version id; default the current")] = None,
    width: Annotated[int | None, Query(ge=MIN_WIDTH, le=MAX_WIDTH)] = None,
) -> Response:
    """The archived image decoded, as PNG: full size, or at least `width` pixels wide (rounded up
    to one of preview.SIZES, so each version is decoded once per size, not once per width)."""
    query = select(ArchiveVersion).where(ArchiveVersion.source_id == source_id)
    query = (
        query.where(ArchiveVersion.id == version)
        if version is not None
        else query.where(ArchiveVersion.superseded_by.is_(None))
    )
    found = session.scalars(query).one_or_none()
    if found is None:
        raise HTTPException(404, f"source {source_id} has no such archive version")
    session.close()  # a decode can take seconds: hold no catalog transaction meanwhile
    try:
        png = request.app.state.previews.png(found, width)
    except PreviewError as error:
        raise HTTPException(409, str(error)) from error
    headers = {"Cache-Control": "private, max-age=3600", "Content-Security-Policy": FILE_POLICY}
    return Response(png, media_type="image/png", headers=headers)


@router.get("/sources/{source_id}/original", response_class=StreamingResponse)
def original(session: Catalog, source_id: int) -> StreamingResponse:
    """The original file, when one of its recorded paths still holds the same bytes and the
    source was recorded as an image: as its format's type (a download unless a raster type
    browsers show), streamed from the descriptor that was checked (originals.py)."""
    found = session.get(Source, source_id)
    if found is None:
        raise _not_found(source_id)
    if found.width is None or found.height is None or found.mode is None:
        raise HTTPException(404, f"source {source_id} was not recorded as an image: its file is not served")
    sha256, size = found.sha256, found.size
    paths = session.scalars(
        select(SourcePath.path)
        .where(SourcePath.source_id == source_id, SourcePath.removed_at.is_(None))
        .order_by(SourcePath.id)
    ).all()
    session.close()
    for path in paths:
        opened = open_original(Path(path), sha256, size)
        if opened is not None:
            headers = {**opened.headers(), "Content-Security-Policy": FILE_POLICY}
            return StreamingResponse(opened.chunks(), media_type=opened.media_type, headers=headers)
    raise HTTPException(404, f"the original of source {source_id} is no longer where the catalog saw it")


@router.get("/queue", response_model=None)
def queue(request: Request, session: Catalog) -> dict[str, Any]:
    """Pending and running jobs, the broker's queue, workers answering, throughput: `status --json`."""
    report = status_report(session)
    session.close()
    try:
        broker = request.app.state.celery_app
        depth = queue_depth(broker)
        workers = answering_workers(broker, timeout=WORKER_PING_SECONDS)
        report.update(broker="ok", queue_depth=depth, workers=workers)
    except Exception as error:  # the broker away is a status to show, not a failure of the page
        report.update(broker=f"unreachable: {error}", queue_depth=None, workers=[])
    return report


def quarantine_after(after: str | None) -> tuple[int, int] | None:
    """The `after` query parameter of a quarantine page (`SOURCE_ID:JOB_ID`), 422 when malformed."""
    try:
        return quarantine_cursor(after) if after else None
    except ValueError as error:
        raise HTTPException(422, str(error)) from error


@router.get("/quarantine", response_model=None)
def quarantine(
    session: Catalog,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = QUARANTINE_PAGE,
    after: Annotated[
        str | None, Query(description="SOURCE_ID:JOB_ID, the previous page's next_after")
    ] = None,
) -> dict[str, Any]:
    """The `aic-admin quarantine --json` document: a page of at most `limit` sources and `limit`
    jobs, with the totals; `next_after` (null on the last page) asks for the next."""
    return quarantine_report(session, limit=limit, after=quarantine_after(after))


# writes ----------------------------------------------------------------------------------------
Write = [Depends(require_token)]


class RetryRequest(BaseModel):
    job_ids: list[int] | None = Field(None, description="only these jobs")
    failed: bool = Field(False, description="failed jobs (the default when quarantined is false)")
    quarantined: bool = Field(False, description="quarantined jobs, with their attempts reset")
    limit: int = Field(actions.DEFAULT_ITEMS, ge=0, le=actions.MAX_ITEMS, description="ids listed at most")


class RecompressRequest(BaseModel):
    ratio: float
    ids: list[int] | None = None
    folder: str | None = None
    older_than: str | None = Field(None, description="an age: 90s, 30m, 12h, 30d, 2w")
    below_ratio: float | None = None
    all: bool = False
    method: Method = Field(Method.AUTO, description="auto, or truncate (recompress --method)")
    keep_versions: int | None = Field(None, description="versions' files kept per source (--keep-versions)")
    dry_run: bool = True
    limit: int = Field(
        actions.DEFAULT_ITEMS,
        ge=0,
        le=actions.MAX_ITEMS,
        description="items (and queued jobs) listed at most; the totals count them all",
    )


class RestoreRequest(BaseModel):
    output: str = Field(description="a folder on the server: the image goes to its old relative path there")


class AddRequest(BaseModel):
    paths: list[str] = Field(description="files or folders (recursive) on the server")
    ratio: float
    archive: str | None = Field(None, description="archive root (default: AIC_ARCHIVE, else AIC_HOME's)")
    policy: Policy = Policy.KEEP
    done_dir: str | None = None
    keep_versions: int = Field(DEFAULT_KEEP_VERSIONS, ge=1, description="versions whose files stay")
    if_bigger: IfBigger = IfBigger.PASSTHROUGH
    min_psnr: float | None = Field(
        None, ge=0, description="quality floor (dB) before delete or move; default the worker's; 0 off"
    )


def _acted(run: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return run(*args, **kwargs)
    except actions.ActionError as error:
        raise HTTPException(error.status, str(error)) from error


@router.post("/retry", response_model=None, dependencies=Write)
def retry(request: Request, session: Writing, body: RetryRequest) -> dict[str, Any]:
    """`aic-admin retry [--failed] [--quarantined] [JOB_ID...]`: the jobs back to pending, published."""
    states = [JobState.FAILED] if body.failed or not body.quarantined else []
    if body.quarantined:
        states.append(JobState.QUARANTINED)
    return actions.retry(
        session, request.app.state.publish, states=states, job_ids=body.job_ids, limit=body.limit
    )


@router.post("/sources/{source_id}/retry", response_model=None, dependencies=Write)
def retry_source(
    request: Request, session: Writing, source_id: int,
    limit: Annotated[int, Query(ge=0, le=actions.MAX_ITEMS)] = actions.DEFAULT_ITEMS,
) -> dict[str, Any]:
    """The source's failed and quarantined jobs back to pending, published."""
    if session.get(Source, source_id) is None:
        raise _not_found(source_id)
    session.rollback()
    states = (JobState.FAILED, JobState.QUARANTINED)
    return actions.retry(session, request.app.state.publish, states=states, source_id=source_id, limit=limit)


@router.post("/recompress", response_model=None, dependencies=Write)
def recompress(request: Request, body: RecompressRequest) -> dict[str, Any]:
    """`aic-admin recompress --json`'s totals and its first `limit` items; without dry_run its jobs
    are queued, not waited for. A dry run needs the token too: it reads the whole selection,
    which costs the server as much as a write, and every POST is a write by its method."""
    try:
        older = duration(body.older_than) if body.older_than else None
    except argparse.ArgumentTypeError as error:
        raise HTTPException(422, str(error)) from error
    selection = Selection(
        ids=tuple(body.ids) if body.ids else None,
        folder=Path(body.folder).expanduser().resolve() if body.folder else None,
        older_than=older,
        below_ratio=body.below_ratio,
        everything=body.all,
    )
    try:
        choices = RecompressParameters(body.method, body.keep_versions)
    except ValueError as error:
        raise HTTPException(422, str(error)) from error
    state = request.app.state
    return _acted(
        actions.recompress,
        state.sessions,
        state.reads,
        state.publish,
        selection,
        body.ratio,
        dry_run=body.dry_run,
        choices=choices,
        limit=body.limit,
    )


@router.post("/sources/{source_id}/restore", response_model=None, dependencies=Write)
def restore(request: Request, session: Writing, source_id: int, body: RestoreRequest) -> dict[str, Any]:
    """A restore job for the current version, into a folder on the server."""
    roots = request.app.state.settings.roots
    return _acted(actions.restore, session, request.app.state.publish, source_id, Path(body.output), roots)


@router.post("/add", response_model=None, dependencies=Write)
def add(request: Request, body: AddRequest) -> dict[str, Any]:
    """`aic-admin add`: files on the server recorded and queued for compression; every path given
    must lie under the server's roots (roots.py), whatever the policy."""
    archive = (
        Path(body.archive) if body.archive else WorkerConfig.from_env().archive_root.expanduser().resolve()
    )
    return _acted(
        actions.add,
        request.app.state.sessions,
        request.app.state.publish,
        [Path(p) for p in body.paths],
        body.ratio,
        roots=request.app.state.settings.roots,
        archive_root=archive,
        archive_given=body.archive is not None,
        policy=body.policy,
        done_dir=Path(body.done_dir) if body.done_dir else None,
        keep_versions=body.keep_versions,
        if_bigger=body.if_bigger,
        min_psnr=body.min_psnr,
    )
