"""INSERT … ON CONFLICT DO NOTHING, on the two backends the catalog runs on.

Watchers and workers record the same content, path or job at the same moment. The loser of
such a race must find the winner's row, not an IntegrityError: on PostgreSQL any error
aborts the whole transaction, taking the caller's other work with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from aic_worker.catalog.models import Base


def insert_if_absent(
    session: Session,
    model: type[Base],
    values: Mapping[str, Any],
    *,
    key: Sequence[str],
    where: ColumnElement[bool] | None = None,
) -> bool:
    """Insert a row unless one with the same unique `key` (under partial index `where`) exists.

    Returns whether this call inserted it.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        insert: Any = postgresql.insert
    elif dialect == "sqlite":
        insert = sqlite.insert
    else:
        raise NotImplementedError(f"the catalog supports PostgreSQL and SQLite, not {dialect}")
    table = model.__table__
    statement = (
        insert(table)
        .values(dict(values))
        .on_conflict_do_nothing(index_elements=key, index_where=where)
        .returning(*table.primary_key.columns)
    )
    # RETURNING rather than rowcount, which psycopg reports as -1 for this statement.
    return session.execute(statement).first() is not None
