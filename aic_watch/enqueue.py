"""From a stable file to a committed job: hash and decode it, record it, create the job.

One transaction per batch records every file's source and path and creates the compress
jobs; the caller publishes the new jobs' ids only after it commits (DESIGN.md, invariant 1:
a message must never name a job the catalog doesn't have). Identity is the content's sha256:
the same content under a second name gains a path, not a job (enqueue_job is idempotent per
content, ratio and model), and a moved or renamed file's old path is marked removed.

A file that doesn't decode is recorded and quarantined with its reason, and the watcher
carries on. The model is AIC_MODEL_ID when set, else model_choice's (AIC_MODEL, the catalog's
default, the shipped weights), as for every other producer of jobs; a compress job can't
exist without one, so with none the files wait for the next scan.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from aic_watch import metrics
from aic_watch.config import FolderConfig
from aic_watch.stability import Candidate, ImageInfo, NotAnImage, Signature, decode_check, file_mtime
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import CodecModel, JobKind, SourcePath, SourceState
from aic_worker.catalog.sources import mark_path_removed, quarantine_source, record_source
from aic_worker.model_choice import NoModelError, model_for_new_jobs

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
MODEL_TTL = 30.0


@dataclass(frozen=True)
class Arrival:
    """A stable file, hashed, with what decoding it said (image, or the problem)."""

    path: str
    folder: FolderConfig
    sha256: str
    size: int
    mtime: datetime
    image: ImageInfo | None
    problem: str | None


def examine(candidate: Candidate) -> Arrival | None:
    """Hash and decode the candidate through one descriptor; None if it changed meanwhile.

    Opened non-blocking, without following a symlink, and checked with fstat, so a path
    swapped for a link, FIFO or device after the stability check can't hang or feed the
    watcher. Raises OSError when it can't be read.
    """
    fd = os.open(candidate.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as file:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or Signature.of(st) != Signature.of(candidate.stat):
            return None
        digest = hashlib.sha256()
        while chunk := file.read(READ_CHUNK):
            digest.update(chunk)
        file.seek(0)
        image, problem = None, None
        try:
            image = decode_check(file)
        except NotAnImage as error:
            problem = str(error)
        if Signature.of(os.fstat(fd)) != Signature.of(st):
            return None
    return Arrival(
        path=candidate.path,
        folder=candidate.folder,
        sha256=digest.hexdigest(),
        size=st.st_size,
        mtime=file_mtime(st),
        image=image,
        problem=problem,
    )


@dataclass(frozen=True)
class _Note:
    """What became of one arrival: logged and counted after the commit, once it is true."""

    outcome: str  # queued, known or quarantined (aic_watch_files_total's label)
    size: int
    level: int
    message: str
    args: tuple[object, ...]
    job_id: int | None = None


def _forget_moved_away(session: Session, source_id: int, path: str) -> None:
    """Mark the source's other paths removed where the file is gone: it was moved or renamed.

    Same content at a new path while the old one is empty is a move, however it was seen
    (a rename event, a move across folders, a move while the watcher was down). Paths in a
    watched folder that is itself missing are left alone: an unmounted share moved nothing.
    """
    others = session.scalars(
        select(SourcePath).where(
            SourcePath.source_id == source_id, SourcePath.removed_at.is_(None), SourcePath.path != path
        )
    )
    for other in others:
        if os.path.isdir(other.folder) and not os.path.lexists(other.path):
            mark_path_removed(session, other.path)


class Enqueuer:
    """Records arrivals in the catalog and creates their jobs, one transaction per batch."""

    def __init__(self, sessions: sessionmaker[Session], model_id: str | None = None) -> None:
        self._sessions = sessions
        self._model_id = model_id
        self._chosen: tuple[str, float] | None = None  # (model id, when chosen)

    @property
    def model_id(self) -> str | None:
        """The model new jobs get: AIC_MODEL_ID, else the last one chosen (None before the first)."""
        return self._model_id or (self._chosen[0] if self._chosen else None)

    def _model(self, session: Session) -> str:
        """AIC_MODEL_ID when set, else the model every other producer of jobs would choose.

        The choice is kept for MODEL_TTL seconds: with AIC_MODEL it costs hashing the weights,
        and a new default model still takes effect within that time.
        """
        if self._model_id:
            if session.get(CodecModel, self._model_id) is None:
                raise NoModelError(f"AIC_MODEL_ID {self._model_id} is not a model the catalog knows")
            return self._model_id
        now = time.monotonic()
        if self._chosen is None or now - self._chosen[1] > MODEL_TTL:
            self._chosen = (model_for_new_jobs(session).id, now)
        return self._chosen[0]

    def record(self, arrivals: Sequence[Arrival]) -> list[int]:
        """Commit the arrivals' sources, paths and jobs; returns the ids of jobs created.

        A batch that breaks a constraint is retried file by file, so one bad name costs only
        itself; a catalog that can't be reached raises (the files wait for the next scan).
        """
        try:
            return self._record_batch(arrivals)
        except SQLAlchemyError as error:
            self._chosen = None  # a model registered in the rolled-back transaction is gone
            if not isinstance(error, IntegrityError | DataError):
                raise
            if len(arrivals) == 1:
                log.error("cannot record %s in the catalog: %s", arrivals[0].path, error.orig or error)
                return []
        return [job_id for arrival in arrivals for job_id in self.record([arrival])]

    def _record_batch(self, arrivals: Sequence[Arrival]) -> list[int]:
        created: list[int] = []
        notes: list[_Note] = []

        def note(outcome: str, arrival: Arrival, level: int, message: str, *args: object,
                 job_id: int | None = None) -> None:
            notes.append(_Note(outcome, arrival.size, level, message, args, job_id))

        with self._sessions() as session:
            model_id = self._model(session) if any(a.problem is None for a in arrivals) else None
            for arrival in arrivals:
                source = record_source(
                    session,
                    path=arrival.path,
                    folder=str(arrival.folder.path),
                    sha256=arrival.sha256,
                    size=arrival.size,
                    mtime=arrival.mtime,
                    width=arrival.image.width if arrival.image else None,
                    height=arrival.image.height if arrival.image else None,
                    mode=arrival.image.mode if arrival.image else None,
                )
                _forget_moved_away(session, source.id, arrival.path)
                if arrival.problem is not None:
                    reason = f"does not decode as an image: {arrival.problem}"
                    quarantine_source(session, source.id, reason)
                    note("quarantined", arrival, logging.ERROR, "quarantined %s: %s", arrival.path, reason)
                    continue
                if source.state is SourceState.QUARANTINED:
                    note("quarantined", arrival, logging.WARNING, "not queued %s: quarantined: %s",
                         arrival.path, source.reason)
                    continue
                job, new = enqueue_job(
                    session,
                    JobKind.COMPRESS,
                    source.id,
                    target_ratio=arrival.folder.ratio,
                    model_id=model_id,
                    parameters=arrival.folder.job_parameters(arrival.path),
                )
                if new:
                    created.append(job.id)
                    note("queued", arrival, logging.INFO, "queued %s as job %d", arrival.path, job.id,
                         job_id=job.id)
                else:
                    note("known", arrival, logging.INFO, "known content %s: path recorded, job %d exists",
                         arrival.path, job.id, job_id=job.id)
            session.commit()
        for entry in notes:
            log.log(entry.level, entry.message, *entry.args, extra={"job_id": entry.job_id})
            metrics.FILES.labels(entry.outcome).inc()
            metrics.BYTES.inc(entry.size)
        return created
