"""What the routes get from the app: a catalog session per request, read-only unless it writes."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session


def catalog_session(request: Request) -> Iterator[Session]:
    """A read-only session on the app's catalog for one request, closed after it."""
    with request.app.state.reads() as session:
        yield session


def writing_session(request: Request) -> Iterator[Session]:
    """A session that may change the catalog, for a write route."""
    with request.app.state.sessions() as session:
        yield session
