"""Choosing sources on the command line: `--id`, `--folder`, `--older-than`, `--below-ratio`, `--all`.

Shared by `ls`, `recompress` and `verify`. Every option narrows the selection (they combine
with AND); `--all` selects everything and is how `recompress` is told that no narrowing is
meant. The conditions are SQL, on the source and its current archive version
(catalog/overview.py's CURRENT).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.sqltypes import NullType

from aic_worker.catalog.models import Source, SourcePath, utcnow
from aic_worker.catalog.overview import CURRENT

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class PathUnder(FunctionElement[bool]):
    """`path` starts with `prefix`, as a bytewise range that an index answers: prefix <= path <
    prefix with its last byte raised by one (LIKE would read every path: SQLite's LIKE ignores
    case, PostgreSQL's index on path is in the database's collation). `prefix` ends with "/",
    so the range's end ends with "0"."""

    type = NullType()  # not Boolean: SQLite would get `(...) = 1`, which no index answers
    inherit_cache = True
    name = "path_under"

    def __init__(self, path: ColumnElement[str], prefix: str) -> None:
        super().__init__(path, literal(prefix), literal(prefix[:-1] + chr(ord(prefix[-1]) + 1)))


def _range(element: PathUnder, compiler: SQLCompiler, low: str, high: str, **kw: Any) -> str:
    path, start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"({path} {low} {start} AND {path} {high} {end})"


@compiles(PathUnder)
def _bytewise(element: PathUnder, compiler: SQLCompiler, **kw: Any) -> str:
    """SQLite compares TEXT bytewise (collation BINARY), so its unique index on path serves."""
    return _range(element, compiler, ">=", "<", **kw)


@compiles(PathUnder, "postgresql")
def _pattern(element: PathUnder, compiler: SQLCompiler, **kw: Any) -> str:
    """The text_pattern_ops operators compare bytewise, and their index serves (models.py)."""
    return _range(element, compiler, "~>=~", "~<~", **kw)


def duration(text: str) -> timedelta:
    """`90s`, `30m`, `12h`, `30d`, `2w` (argparse type: a bad value is a usage error)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 90s, 30m, 12h, 30d or 2w")
    return timedelta(seconds=float(match[1]) * UNITS[match[2]])


def add_selection_arguments(parser: argparse.ArgumentParser, *, with_all: bool = True) -> None:
    group = parser.add_argument_group("which sources (options combine; each narrows the selection)")
    group.add_argument("--id", dest="ids", type=int, nargs="+", metavar="N", help="these source ids")
    group.add_argument("--folder", type=Path, metavar="DIR", help="sources found under this folder")
    group.add_argument(
        "--older-than",
        type=duration,
        metavar="AGE",
        help="archived (or, not yet archived, first seen) more than AGE ago: 12h, 30d, 2w",
    )
    group.add_argument(
        "--below-ratio", type=float, metavar="R", help="whose current archive's achieved ratio is below R"
    )
    if with_all:
        group.add_argument("--all", dest="everything", action="store_true", help="every source")


@dataclass(frozen=True)
class Selection:
    ids: tuple[int, ...] | None = None
    folder: Path | None = None
    older_than: timedelta | None = None
    below_ratio: float | None = None
    everything: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Selection:
        return cls(
            ids=tuple(args.ids) if args.ids else None,
            folder=args.folder.expanduser().resolve() if args.folder else None,
            older_than=args.older_than,
            below_ratio=args.below_ratio,
            everything=getattr(args, "everything", False),
        )

    @property
    def narrowed(self) -> bool:
        """Whether any option narrows the selection."""
        return any(v is not None for v in (self.ids, self.folder, self.older_than, self.below_ratio))

    @property
    def given(self) -> bool:
        """Whether the command line chose anything at all (an option, or --all)."""
        return self.narrowed or self.everything

    def conditions(self, now: datetime | None = None) -> list[ColumnElement[bool]]:
        """WHERE clauses on Source and CURRENT (outer-joined: a source may have no version yet)."""
        found: list[ColumnElement[bool]] = []
        if self.ids is not None:
            found.append(Source.id.in_(self.ids))
        if self.folder is not None:
            folder = str(self.folder)
            under = (SourcePath.folder == folder) | PathUnder(SourcePath.path, folder.rstrip("/") + "/")
            found.append(Source.id.in_(select(SourcePath.source_id).where(under)))
        if self.older_than is not None:
            cutoff = (now or utcnow()) - self.older_than
            found.append(func.coalesce(CURRENT.created_at, Source.first_seen_at) < cutoff)
        if self.below_ratio is not None:
            found.append(CURRENT.achieved_ratio < self.below_ratio)
        return found
