"""The API's writes, each done the way its `aic-admin` command does it, then left to the workers.

The server runs no job itself (it may have no GPU, and a request must not wait minutes): it
commits jobs in the catalog and publishes their ids, and the workers do the work. A message
the broker loses is re-sent by their reaper (DESIGN.md, invariant 1), so `published` below
may be smaller than the number of jobs without anything being lost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from aic_worker.admin.maintenance_commands import _reset as reset_job
from aic_worker.admin.recompress_command import WORK, Item, Totals, candidates, plan
from aic_worker.admin.restore_command import Restoration, output_path
from aic_worker.admin.selection import Selection
from aic_worker.admin.worker_commands import _files, record_file
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import ArchiveKind, Job, JobKind, JobState, Source
from aic_worker.catalog.overview import source_rows
from aic_worker.jobs.parameters import CompressParameters, RecompressParameters
from aic_worker.model_choice import NoModelError, model_for_new_jobs
from aic_worker.store.policy import Policy


class ActionError(Exception):
    """A write that can't be done as asked; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


# Wakes a worker for a committed job; False when the broker is away (queue.publish on the app's broker).
Publish = Callable[[int, JobKind], bool]


def _published(publish: Publish, jobs: Sequence[tuple[int, JobKind]]) -> int:
    return sum(publish(job_id, kind) for job_id, kind in jobs)


def retry(
    session: Session,
    publish: Publish,
    *,
    states: Sequence[JobState] = (JobState.FAILED,),
    job_ids: Sequence[int] | None = None,
    source_id: int | None = None,
) -> dict[str, Any]:
    """Jobs in `states` back to pending and published, as `aic-admin retry` does (quarantined
    ones with their attempts reset); narrowed to `job_ids` or to one source's jobs."""
    with session.begin():
        query = select(Job).where(Job.state.in_(states)).order_by(Job.id).with_for_update()
        if job_ids is not None:
            query = query.where(Job.id.in_(job_ids))
        if source_id is not None:
            query = query.where(Job.source_id == source_id)
        jobs = list(session.scalars(query))
        for job in jobs:
            reset_job(session, job)
        again = [(job.id, job.kind) for job in jobs]
    return {"retried": [job_id for job_id, _ in again], "published": _published(publish, again)}


def recompress(
    sessions: sessionmaker[Session],
    reads: sessionmaker[Session],
    publish: Publish,
    selection: Selection,
    ratio: float,
    *,
    dry_run: bool,
    choices: RecompressParameters | None = None,
) -> dict[str, Any]:
    """`aic-admin recompress --json`'s plan, made by its own planner; unless `dry_run`, the jobs
    of its work committed and published (`queued`: source and job ids), not waited for: their
    outcome shows on each source. `choices`: the method and keep-versions, as the CLI's options."""
    choices = choices or RecompressParameters()
    if not selection.given:
        raise ActionError("say which sources: ids, folder, older_than, below_ratio or all", 422)
    if not ratio > 1 or not math.isfinite(ratio):
        raise ActionError(f"ratio must be a number above 1, got {ratio:g}", 422)
    with reads() as session:
        try:
            new_model = model_for_new_jobs(session).id
        except NoModelError as error:
            raise ActionError(str(error)) from error
    totals = Totals()
    items: list[Item] = []
    for batch in candidates(reads, selection.conditions()):
        planned = [plan(candidate, ratio, new_model, choices.method) for candidate in batch]
        totals.add(planned)
        items.extend(planned)
    report: dict[str, Any] = {
        "ratio": ratio,
        "dry_run": dry_run,
        "items": [item.record() for item in items],
        **asdict(totals),
    }
    if dry_run:
        return report
    with sessions() as session, session.begin():
        queued = [
            (item.id, _recompress_job(session, item, ratio, choices)) for item in items if item.action in WORK
        ]
        jobs = [(job.id, job.kind) for _, job in queued]
        report["queued"] = [{"id": source_id, "job_id": job.id} for source_id, job in queued]
    report["published"] = _published(publish, jobs)
    return report


def _recompress_job(session: Session, item: Item, ratio: float, choices: RecompressParameters) -> Job:
    """The item's job, with the parameters the CLI gives it: the same work asked twice is one job."""
    return enqueue_job(
        session,
        JobKind.RECOMPRESS,
        item.id,
        target_ratio=ratio,
        model_id=item.model_id,
        parameters=choices.to_json(),
    )[0]


def restore(session: Session, publish: Publish, source_id: int, folder: Path) -> dict[str, Any]:
    """A restore job for the source's current version into `folder` on this server, in the
    layout `aic-admin restore` uses (the path relative to its watched folder)."""
    if not folder.is_absolute():
        raise ActionError(f"the output folder must be an absolute path on the server, got {folder}", 422)
    with session.begin():
        row = next(source_rows(session, Source.id == source_id), None)
        if row is None:
            raise ActionError(f"no source with id {source_id}", 404)
        if row.version is None:
            raise ActionError(f"source {source_id} has no archive version to restore")
        # The worker writes a PNG, or a passthrough version's own bytes under the original's name.
        suffix = None if row.version.kind is ArchiveKind.PASSTHROUGH else ".png"
        target = output_path(folder, Restoration(row.version, row.path), suffix)
        job, created = enqueue_job(session, JobKind.RESTORE, source_id, parameters={"output": str(target)})
        job_id, kind = job.id, job.kind
    return {
        "job_id": job_id,
        "output": str(target),
        "created": created,
        "published": _published(publish, [(job_id, kind)]),
    }


def add(
    sessions: sessionmaker[Session],
    publish: Publish,
    paths: Sequence[Path],
    ratio: float,
    *,
    archive_root: Path,
    policy: Policy = Policy.KEEP,
    done_dir: Path | None = None,
) -> dict[str, Any]:
    """`aic-admin add`: each file (folders recursively) recorded with its compress job, then published."""
    if not ratio > 1 or not math.isfinite(ratio):
        raise ActionError(f"ratio must be a number above 1, got {ratio:g}", 422)
    if policy is Policy.MOVE and done_dir is None:
        raise ActionError("the move policy needs a done_dir", 422)
    queued: list[dict[str, Any]] = []
    known: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for given in paths:
        if not given.is_absolute() or not given.exists():
            failed.append({"path": str(given), "error": "no such file or folder (paths are on the server)"})
            continue
        for file, folder in _files(given.resolve()):
            try:
                parameters = CompressParameters(file, folder, archive_root, policy, done_dir)
                job, publish_it = record_file(sessions(), parameters, ratio)
            except (OSError, NoModelError) as error:
                failed.append({"path": str(file), "error": str(error)})
                continue
            entry = {"path": str(file), "source_id": job.source_id, "job_id": job.id}
            if publish_it:
                publish(job.id, job.kind)
                queued.append(entry)
            else:
                known.append(entry)
    return {"queued": queued, "known": known, "failed": failed}
