"""The dashboard's HTML pages: overview, sources, source, quarantine, recompress.

Each page reads the catalog through the same report functions as the API (catalog/reports.py)
and renders a Jinja2 template; what changes after load (the queue, actions) goes through the
JSON API from static/aic.js. A page never holds the API token: the user types it, the
browser keeps it in sessionStorage and sends it with each write.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from aic_worker.admin.output import human_bytes
from aic_worker.admin.selection import Selection
from aic_worker.catalog.models import ArchiveVersion, SourcePath
from aic_worker.catalog.overview import STATES
from aic_worker.catalog.reports import (
    quarantine_report,
    source_details,
    source_page,
    status_report,
)
from aic_worker.web.api import quarantine_after
from aic_worker.web.dependencies import catalog_session

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters["bytes"] = lambda v: "–" if v is None else human_bytes(v)
templates.env.filters["num"] = lambda v, digits=2: "–" if v is None else f"{v:.{digits}f}"
templates.env.filters["when"] = lambda v: "–" if v is None else f"{v:%Y-%m-%d %H:%M:%S}"
Catalog = Annotated[Session, Depends(catalog_session)]
PAGE_SIZE = 50
CHART_DAYS = 3


def _page(request: Request, template: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"writes": bool(request.app.state.settings.token), **context}
    )


def _hour_text(session: Session) -> ColumnElement[str]:
    """The UTC hour a version was written, as `YYYY-MM-DD HH:00:00`, in the database's dialect."""
    created = ArchiveVersion.created_at
    if session.get_bind().dialect.name == "sqlite":  # stored as naive UTC text
        return func.strftime("%Y-%m-%d %H:00:00", created)
    return func.to_char(func.timezone("UTC", created), "YYYY-MM-DD HH24:00:00")


def archived_per_hour(session: Session, now: datetime, days: int = CHART_DAYS) -> list[dict[str, Any]]:
    """Archive versions written in each hour of the last `days` days, oldest first: counted by
    the database, a row per hour."""
    start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    hour = _hour_text(session)
    counted = session.execute(
        select(hour, func.count()).where(ArchiveVersion.created_at >= start).group_by(hour)
    ).all()
    counts = {datetime.fromisoformat(text).replace(tzinfo=UTC): n for text, n in counted}
    hours = [start + timedelta(hours=h) for h in range(days * 24 + 1)]
    return [{"hour": at, "files": counts.get(at, 0)} for at in hours]


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, session: Catalog) -> HTMLResponse:
    chart = request.app.state.chart.get()[0]
    return _page(
        request,
        "overview.html",
        stats=request.app.state.stats.get()[0],
        status=status_report(session),
        chart=chart,
        chart_max=max(1, *(c["files"] for c in chart)),
    )


@router.get("/sources", response_class=HTMLResponse)
def sources(
    request: Request,
    session: Catalog,
    q: str = "",
    state: Annotated[str, Query(pattern=f"^({'|'.join(STATES)})?$")] = "",
    folder: str = "",
    page: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    selection = Selection(folder=Path(folder).expanduser().resolve() if folder else None)
    offset = (page - 1) * PAGE_SIZE
    items = source_page(
        session,
        conditions=selection.conditions(),
        state=state or None,
        q=q or None,
        limit=PAGE_SIZE + 1,
        offset=offset,
    )
    return _page(
        request,
        "sources.html",
        items=items[:PAGE_SIZE],
        more=len(items) > PAGE_SIZE,
        page=page,
        filters={"q": q, "state": state, "folder": folder},
        states=STATES,
    )


def _original_present(session: Session, source_id: int, size: int) -> bool:
    """A recorded path still holds a regular file of the original's size (the API checks its sha256)."""
    for path in session.scalars(
        select(SourcePath.path).where(SourcePath.source_id == source_id, SourcePath.removed_at.is_(None))
    ):
        try:
            found = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(found.st_mode) and found.st_size == size:
            return True
    return False


@router.get("/sources/{source_id}", response_class=HTMLResponse)
def source(request: Request, session: Catalog, source_id: int) -> HTMLResponse:
    details = source_details(session, source_id)
    if details is None:
        raise HTTPException(404, f"no source with id {source_id}")
    versions = details["versions"]
    current = next((v for v in versions if v["current"]), None)
    before: dict[str, Any] | None = None
    if current is not None:
        api = f"/api/v1/sources/{source_id}"
        if _original_present(session, source_id, details["source_bytes"]):
            before = {"label": "original", "url": f"{api}/original"}
        else:
            earlier = [v for v in versions if v["id"] < current["id"]]
            if earlier:
                before = {
                    "label": f"version {earlier[-1]['id']}",
                    "url": f"{api}/preview.png?version={earlier[-1]['id']}",
                }
    return _page(request, "source.html", source=details, current=current, before=before)


@router.get("/quarantine", response_class=HTMLResponse)
def quarantine(request: Request, session: Catalog, after: str = "") -> HTMLResponse:
    """A page of PAGE_SIZE quarantined jobs and sources; the bulk retry acts on every one, chosen
    by state in SQL (api.retry), not on those the page shows."""
    report = quarantine_report(session, limit=PAGE_SIZE, after=quarantine_after(after or None))
    return _page(request, "quarantine.html", report=report, after=after)


@router.get("/recompress", response_class=HTMLResponse)
def recompress(request: Request) -> HTMLResponse:
    return _page(request, "recompress.html")
