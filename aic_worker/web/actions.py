"""The API's writes, each done the way its `aic-admin` command does it, then left to the workers.

The server runs no job itself (it may have no GPU, and a request must not wait minutes): it
commits jobs in the catalog and publishes their ids, and the workers do the work. A message
the broker loses is re-sent by their reaper (DESIGN.md, invariant 1), so `published` below
may be smaller than the number of jobs without anything being lost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from aic_worker.admin.recompress_command import WORK, Item, Totals, candidates, plan
from aic_worker.admin.restore_command import Restoration, output_path
from aic_worker.admin.selection import Selection
from aic_worker.admin.worker_commands import files_to_add, record_file
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import ArchiveKind, Job, JobKind, JobState, Source
from aic_worker.catalog.overview import source_rows
from aic_worker.catalog.retry import Publish, retry_jobs
from aic_worker.codec.image_modes import FILE_FORMATS, PNG_MODES
from aic_worker.jobs.parameters import CompressParameters, IfBigger, RecompressParameters
from aic_worker.model_choice import NoModelError, model_for_new_jobs
from aic_worker.store.policy import Policy
from aic_worker.store.retention import DEFAULT_KEEP_VERSIONS
from aic_worker.web.roots import OutsideRoots, inside_roots


class ActionError(Exception):
    """A write that can't be done as asked; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


DEFAULT_ITEMS, MAX_ITEMS = 100, 1000  # a recompress answer's items (and queued jobs), a retry's ids, at most


def _published(publish: Publish, jobs: Sequence[tuple[int, JobKind]]) -> int:
    return sum(publish(job_id, kind) for job_id, kind in jobs)


def retry(
    session: Session,
    publish: Publish,
    *,
    states: Sequence[JobState] = (JobState.FAILED,),
    job_ids: Sequence[int] | None = None,
    source_id: int | None = None,
    limit: int = DEFAULT_ITEMS,
) -> dict[str, Any]:
    """Jobs in `states` back to pending and published, as `aic-admin retry` does (catalog/retry.py:
    a batch at a time, quarantined ones with their attempts reset); narrowed to `job_ids` or to
    one source's jobs. `retried` lists the lowest `limit` ids, `retried_count` all of them."""
    if not 0 <= limit <= MAX_ITEMS:
        raise ActionError(f"limit must be between 0 and {MAX_ITEMS}, got {limit}", 422)
    retried = retry_jobs(session, publish, states, job_ids=job_ids, source_id=source_id, limit=limit)
    return {
        "retried": retried.ids,
        "published": retried.published,
        "retried_count": retried.count,
        "limit": limit,
        "retried_left_out": retried.count - len(retried.ids),
    }


def recompress(
    sessions: sessionmaker[Session],
    reads: sessionmaker[Session],
    publish: Publish,
    selection: Selection,
    ratio: float,
    *,
    dry_run: bool,
    choices: RecompressParameters | None = None,
    limit: int = DEFAULT_ITEMS,
) -> dict[str, Any]:
    """`aic-admin recompress --json`'s plan, made by its own planner; unless `dry_run`, the jobs
    of its work committed and published, not waited for: their outcome shows on each source.
    `choices`: the method and keep-versions, as the CLI's options.

    The plan goes a batch at a time (recompress_command.candidates), each batch's jobs committed
    and published before the next is read, and only the first `limit` items (and queued jobs)
    are kept for the answer, with the totals and the counts of what was left out: asking for
    `all` of 100,000 sources costs one batch of memory and a small answer, not every item.
    """
    choices = choices or RecompressParameters()
    if not selection.given:
        raise ActionError("say which sources: ids, folder, older_than, below_ratio or all", 422)
    if not ratio > 1 or not math.isfinite(ratio):
        raise ActionError(f"ratio must be a number above 1, got {ratio:g}", 422)
    if not 0 <= limit <= MAX_ITEMS:
        raise ActionError(f"limit must be between 0 and {MAX_ITEMS}, got {limit}", 422)
    with reads() as session:
        try:
            new_model = model_for_new_jobs(session).id
        except NoModelError as error:
            raise ActionError(str(error)) from error
    totals = Totals()
    items: list[dict[str, Any]] = []
    queued: list[dict[str, int]] = []
    queued_count = published = 0
    for batch in candidates(reads, selection.conditions()):
        planned = [plan(candidate, ratio, new_model, choices.method) for candidate in batch]
        totals.add(planned)
        items.extend(item.record() for item in planned[: limit - len(items)])
        if dry_run:
            continue
        with sessions() as session, session.begin():
            made = [
                (item.id, _recompress_job(session, item, ratio, choices))
                for item in planned
                if item.action in WORK
            ]
            jobs = [(job.id, job.kind) for _, job in made]
            queued.extend(
                {"id": source_id, "job_id": job.id} for source_id, job in made[: limit - len(queued)]
            )
        queued_count += len(jobs)
        published += _published(publish, jobs)
    report: dict[str, Any] = {
        "ratio": ratio,
        "dry_run": dry_run,
        "items": items,
        **asdict(totals),
        "limit": limit,
        "items_left_out": totals.selected - len(items),
    }
    if not dry_run:
        report.update(
            queued=queued,
            queued_count=queued_count,
            queued_left_out=queued_count - len(queued),
            published=published,
        )
    return report


def _checked(path: Path, roots: Sequence[Path], what: str) -> Path:
    """`path` resolved, or ActionError 403 naming it when it is outside `roots` (roots.py)."""
    try:
        return inside_roots(path, roots, what=what, must_exist=False)
    except OutsideRoots as error:
        raise ActionError(str(error), 403) from error


def _restored_suffix(mode: str | None) -> str:
    """The suffix the worker's restore gives a decoded image of `mode` (image_modes.for_file)."""
    return FILE_FORMATS["png" if mode is None or mode in PNG_MODES else "tiff"][1]


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


def restore(
    session: Session, publish: Publish, source_id: int, folder: Path, roots: Sequence[Path]
) -> dict[str, Any]:
    """A restore job for the source's current version into `folder` on this server, in the
    layout `aic-admin restore` uses (the path relative to its watched folder); `folder` must
    lie under one of `roots` (roots.py)."""
    if not folder.is_absolute():
        raise ActionError(f"the output folder must be an absolute path on the server, got {folder}", 422)
    folder = _checked(folder, roots, "restore")
    with session.begin():
        row = next(source_rows(session, Source.id == source_id), None)
        if row is None:
            raise ActionError(f"no source with id {source_id}", 404)
        if row.version is None:
            raise ActionError(f"source {source_id} has no archive version to restore")
        # The worker writes a PNG, a TIFF for a mode PNG can't hold (image_modes.for_file, by the
        # mode recorded at add), or a passthrough version's own bytes under the original's name.
        suffix = None if row.version.kind is ArchiveKind.PASSTHROUGH else _restored_suffix(row.source.mode)
        target = output_path(folder, Restoration(row.version, row.path), suffix)
        _checked(target, roots, "restore")  # its relative path can't leave `folder`; said twice
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
    roots: Sequence[Path],
    archive_root: Path,
    archive_given: bool = False,
    policy: Policy = Policy.KEEP,
    done_dir: Path | None = None,
    keep_versions: int = DEFAULT_KEEP_VERSIONS,
    if_bigger: IfBigger = IfBigger.PASSTHROUGH,
    min_psnr: float | None = None,
) -> dict[str, Any]:
    """`aic-admin add`: each file (folders recursively) recorded with its compress job, then published.

    Every path, and the archive root and done folder when given over HTTP, must lie under
    `roots`: with `policy` delete or move the workers remove the originals, so a path
    outside them would let a request remove any file the workers may. Links are not followed
    (a folder's are skipped, as by the CLI; one given is resolved and checked where it leads).
    """
    if not ratio > 1 or not math.isfinite(ratio):
        raise ActionError(f"ratio must be a number above 1, got {ratio:g}", 422)
    if policy is Policy.MOVE and done_dir is None:
        raise ActionError("the move policy needs a done_dir", 422)
    checked = [_checked(given, roots, "add") for given in paths]
    if archive_given:
        archive_root = _checked(archive_root, roots, "add: archive")
    if done_dir is not None:
        done_dir = _checked(done_dir, roots, "add: done_dir")
    queued: list[dict[str, Any]] = []
    known: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for given, resolved in zip(paths, checked, strict=True):
        if not resolved.exists():
            failed.append({"path": str(given), "error": "no such file or folder (paths are on the server)"})
            continue
        for file, folder in files_to_add(resolved, (archive_root, done_dir)):
            if not any(file.resolve().is_relative_to(root) for root in roots):
                failed.append({"path": str(file), "error": "outside the server's roots"})
                continue
            try:
                parameters = CompressParameters(
                    file, folder, archive_root, policy, done_dir, keep_versions, if_bigger, min_psnr
                )
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
