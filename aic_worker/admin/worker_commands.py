"""`aic-admin add | status`: feed files to the workers directly, and see how the work goes.

`add` is for pipelines without watched folders: it records each file as the watcher would
(source, path, compress job with its folder settings in the job's parameters), commits,
and then publishes the job ids. Torch-free.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy.orm import Session

from aic_watch.filters import under_outputs
from aic_watch.options import add_archive_options
from aic_worker.catalog.engine import create_catalog_engine, reading, session_factory
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.migrate import prepare_catalog
from aic_worker.catalog.models import Job, JobKind, JobState
from aic_worker.catalog.reports import status_report
from aic_worker.catalog.sources import record_source
from aic_worker.config import WorkerConfig
from aic_worker.jobs.parameters import CompressParameters, IfBigger
from aic_worker.jobs.queue import answering_workers, publish, queue_depth
from aic_worker.model_choice import NoModelError, model_for_new_jobs
from aic_worker.store.archive import PASSTHROUGH_SUFFIX, SUFFIX, file_sha256
from aic_worker.store.policy import Policy


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add = subparsers.add_parser("add", help="put files or folders into the catalog and the work queue")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders (recursive)")
    add_archive_options(
        add,
        ratio_required=True,
        archive="archive root (default: AIC_ARCHIVE, else AIC_HOME/archive)",
        done_option="--done",
        done="folder for originals under --policy move",
    )
    add.set_defaults(func=_add)

    status = subparsers.add_parser("status", help="queue depth, running and failed jobs, workers, throughput")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)


def files_to_add(path: Path, outputs: tuple[Path | None, ...] = ()) -> Iterator[tuple[Path, Path]]:
    """(file, folder it was added from): a folder's regular files, recursively, links not followed.

    AIC's own files are skipped, by the watcher's rule (aic_watch/filters.py): anything under
    the archive root or the done folder (`outputs`), and `.aic` and `.orig` (passthrough)
    names anywhere, so that adding a folder that holds its archive takes nothing back in.
    """
    if not path.is_dir():
        yield path, path.parent
        return
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not under_outputs(os.path.join(root, d), outputs))
        for name in sorted(names):
            file = Path(root) / name
            hidden_or_ours = name.startswith(".") or name.endswith((SUFFIX, PASSTHROUGH_SUFFIX))
            if file.is_file() and not file.is_symlink() and not hidden_or_ours:
                yield file, path


def _header(path: Path) -> tuple[int | None, int | None, str | None]:
    """Size and mode from the image header, or Nones: the worker gives the clear error for a bad file."""
    try:
        with Image.open(path) as image:
            return image.width, image.height, image.mode
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None, None, None


def _add(args: argparse.Namespace) -> int:
    if not args.ratio > 0:
        print("aic-admin add: --ratio must be positive", file=sys.stderr)
        return 2
    policy = Policy(args.policy)
    if policy is Policy.MOVE and args.done_dir is None:
        print("aic-admin add: --policy move needs --done DIR", file=sys.stderr)
        return 2
    archive_root = (args.archive or WorkerConfig.from_env().archive_root).expanduser().resolve()
    done_dir = args.done_dir.expanduser().resolve() if args.done_dir else None
    engine = create_catalog_engine()
    failed = queued = known = 0
    try:
        prepare_catalog(engine)
        sessions = session_factory(engine)
        for given in args.paths:
            if not given.exists():
                print(f"aic-admin add: {given}: no such file or folder", file=sys.stderr)
                failed += 1
                continue
            for file, folder in files_to_add(given.expanduser().resolve(), (archive_root, done_dir)):
                try:
                    parameters = CompressParameters(file, folder, archive_root, policy, done_dir,
                                                    args.keep_versions, IfBigger(args.if_bigger),
                                                    min_psnr=args.min_psnr)
                    job, publish_it = record_file(sessions(), parameters, args.ratio)
                except (OSError, NoModelError) as error:
                    print(f"aic-admin add: {file}: {error}", file=sys.stderr)
                    failed += 1
                    continue
                if publish_it:
                    publish(job.id, job.kind)
                    queued += 1
                else:
                    known += 1
    finally:
        engine.dispose()
    print(f"queued {queued} job(s); {known} already queued or archived; {failed} failed")
    return 1 if failed else 0


def record_file(session: Session, parameters: CompressParameters, ratio: float) -> tuple[Job, bool]:
    """Record the file and its compress job (committed); returns (job, whether to publish it)."""
    file, folder = parameters.path, parameters.folder
    stat = file.stat()
    width, height, mode = _header(file)
    with session, session.begin():
        source = record_source(
            session, path=str(file), folder=str(folder), sha256=file_sha256(file), size=stat.st_size,
            mtime=datetime.fromtimestamp(stat.st_mtime, UTC), width=width, height=height, mode=mode,
        )
        model = model_for_new_jobs(session)
        job, created = enqueue_job(
            session, JobKind.COMPRESS, source.id, target_ratio=ratio, model_id=model.id,
            parameters=parameters.to_json(),
        )
    return job, created or job.state is JobState.PENDING


def _broker_status() -> dict[str, Any]:
    try:
        depth = queue_depth()
        workers = answering_workers()
    except Exception as error:  # the broker away is a status to show, not a crash
        return {"broker": f"unreachable: {error}", "queue_depth": None, "workers": []}
    return {"broker": "ok", "queue_depth": depth, "workers": workers}


def _status(args: argparse.Namespace) -> int:
    engine = create_catalog_engine()
    try:
        with session_factory(reading(engine))() as session:
            report = status_report(session)
    finally:
        engine.dispose()
    report.update(_broker_status())
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    depth = report["queue_depth"]
    print(f"broker: {report['broker']}; queue depth: {'?' if depth is None else depth}")
    print(f"workers: {', '.join(report['workers']) or 'none answering'}")
    print("jobs: " + ", ".join(f"{state} {n}" for state, n in report["jobs"].items()))
    rates = report["throughput_jobs_per_minute"]
    print("done per minute: " + ", ".join(f"last {w}: {r:g}" for w, r in rates.items()))
    for job in report["running"]:
        print(f"  running #{job['id']} {job['kind']} by {job['owner']} until {job['lease_expires_at']}")
    for job in report["recent_failures"]:
        print(f"  {job['state']} #{job['id']} {job['kind']} ({job['attempts']} attempts): {job['reason']}")
    return 0
