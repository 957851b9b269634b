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

from sqlalchemy import ColumnElement, exists, func

from aic_worker.catalog.models import Source, SourcePath, utcnow
from aic_worker.catalog.overview import CURRENT

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


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
            found.append(
                exists().where(
                    SourcePath.source_id == Source.id,
                    (SourcePath.folder == folder)
                    | SourcePath.path.startswith(folder.rstrip("/") + "/", autoescape=True),
                )
            )
        if self.older_than is not None:
            cutoff = (now or utcnow()) - self.older_than
            found.append(func.coalesce(CURRENT.created_at, Source.first_seen_at) < cutoff)
        if self.below_ratio is not None:
            found.append(CURRENT.achieved_ratio < self.below_ratio)
        return found
