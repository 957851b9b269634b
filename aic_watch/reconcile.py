"""Reconciliation scans: what events can't tell — files that arrived while the watcher was
down, events the kernel dropped, shares that send none — found by walking the folder.

A scan only proposes candidates; they wait out the same stability window as live events
(a file half-uploaded when the watcher restarts must not be taken). The walk is lazy and
its consumer pauses it while the stability tracker is full, so a tree of a million files
costs memory per directory level, not per file. Files the catalog already knows with the
same size and mtime, and that have a compress job or were quarantined, are not hashed again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from aic_watch.config import FolderConfig
from aic_watch.filters import skips_directory
from aic_watch.stability import file_mtime
from aic_worker.catalog.models import Job, JobKind, Source, SourcePath, SourceState

log = logging.getLogger(__name__)

QUERY_CHUNK = 500


def walk(folder: FolderConfig, start: str | None = None) -> Iterator[str]:
    """Paths of non-directories under `start` (default: the folder), never through a symlinked
    directory, skipping hidden directories and the archive's own; filters.refuse() judges the rest.
    """
    stack = [start or str(folder.path)]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if not is_dir:
                        yield entry.path
                    elif folder.recursive and not skips_directory(folder, entry.path):
                        stack.append(entry.path)
        except OSError as error:
            log.warning("cannot scan %s: %s", directory, error.strerror or error)


def known_unchanged(session: Session, files: Sequence[tuple[str, os.stat_result]]) -> set[str]:
    """The paths among `files` the catalog already has, with this size and mtime, dealt with."""
    dealt_with = (Source.state == SourceState.QUARANTINED) | exists().where(
        Job.source_id == Source.id, Job.kind == JobKind.COMPRESS
    )
    known: set[str] = set()
    for i in range(0, len(files), QUERY_CHUNK):
        chunk = dict(files[i : i + QUERY_CHUNK])
        rows = session.execute(
            select(SourcePath.path, SourcePath.mtime, Source.size)
            .join(Source, Source.id == SourcePath.source_id)
            .where(SourcePath.path.in_(chunk), SourcePath.removed_at.is_(None), dealt_with)
        )
        for path, mtime, size in rows:
            st = chunk[path]
            if size == st.st_size and mtime == file_mtime(st):
                known.add(path)
    return known
