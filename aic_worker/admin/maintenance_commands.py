"""`aic-admin verify | retry | models`: keeping the archive sound.

verify   the sha256 of every current archive file, here; then VERIFY jobs (pipeline.verify:
         the sha256 again, a full decode, and the PSNR against the original when it is still
         there) for the files that failed it or were never verified since written, or for all
         of them (`--all`). Exit 1 if any fails.
retry    failed jobs (now, without waiting out their backoff) or quarantined ones (with their
         attempts reset) back to pending, and published.
models   the codec models the catalog knows: list, import, set the default, remove one that
         no archive version or job uses (invariant 4: one in use is refused).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.orm import Session

from aic_worker.admin import output
from aic_worker.admin.catalog_access import open_catalog, read_catalog
from aic_worker.admin.job_batch import add_execution_arguments, run_as_asked
from aic_worker.admin.output import CommandError
from aic_worker.admin.selection import Selection, add_selection_arguments
from aic_worker.catalog.codec_models import (
    ModelInUseError,
    register_model,
    remove_model,
    set_default_model,
)
from aic_worker.catalog.engine import data_dir
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import (
    ArchiveVersion,
    CodecModel,
    Job,
    JobKind,
    JobState,
    Source,
    SourceState,
)
from aic_worker.catalog.overview import CURRENT, source_rows
from aic_worker.jobs.queue import publish
from aic_worker.store.archive import file_sha256, fsync_directory


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check archive files: sha256 and a full decode (exit 1 if any fails)",
        description="Check current archive versions: every file's sha256 against the catalog, and a "
        "full decode (and the PSNR against the original when it is still there) of each file not "
        "decoded since it was written or whose sha256 failed; --all decodes every one.",
    )
    p.add_argument(
        "--all",
        dest="every_version",
        action="store_true",
        help="decode every current version, verified before or not",
    )
    add_selection_arguments(p, with_all=False)
    add_execution_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=verify)

    p = subparsers.add_parser("retry", help="run failed (default) or quarantined jobs again")
    p.add_argument("job_ids", type=int, nargs="*", metavar="JOB_ID", help="only these jobs")
    p.add_argument("--failed", action="store_true", help="failed jobs, without waiting out their backoff")
    p.add_argument("--quarantined", action="store_true", help="quarantined jobs, with their attempts reset")
    p.set_defaults(func=retry)

    models = subparsers.add_parser("models", help="codec models: list, import, set the default, remove")
    models.add_argument("--json", action="store_true", help="machine-readable list")
    models.set_defaults(func=models_list)
    sub = models.add_subparsers(dest="models_command", metavar="MODELS_COMMAND")
    p = sub.add_parser("list", help="the models the catalog knows (the default)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=models_list)
    p = sub.add_parser("import", help="register a weights file (copied into AIC_HOME/models)")
    p.add_argument("file", type=Path, metavar="FILE.safetensors")
    p.add_argument("--default", action="store_true", help="make it the model new jobs use")
    p.add_argument("--no-copy", action="store_true", help="record the file where it is instead of copying it")
    p.set_defaults(func=models_import)
    for name, what, command in (
        ("set-default", "the model new compress jobs use", models_set_default),
        ("remove", "forget a model no archive or job uses", models_remove),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("model", metavar="ID", help="a model id (sha256) or a unique prefix of one")
        p.set_defaults(func=command)


# verify ------------------------------------------------------------------------------------


def _unverified() -> ColumnElement[bool]:
    """No verify job finished since the current version was written."""
    return ~exists().where(
        Job.source_id == Source.id,
        Job.kind == JobKind.VERIFY,
        Job.state == JobState.DONE,
        Job.finished_at >= CURRENT.created_at,
    )


def _checksum_holds(version: ArchiveVersion) -> bool:
    try:
        return file_sha256(Path(version.path)) == version.sha256
    except OSError:
        return False


def verify(args: argparse.Namespace) -> int:
    selection = Selection.from_args(args)
    conditions = [CURRENT.id.is_not(None), *selection.conditions()]
    with open_catalog() as sessions:
        with sessions() as session:
            rows = list(source_rows(session, *conditions))
            current = (CURRENT.source_id == Source.id) & CURRENT.superseded_by.is_(None)
            unverified = set(
                session.scalars(select(Source.id).join(CURRENT, current).where(*conditions, _unverified()))
            )
        to_decode = [  # checksums are read outside any transaction: SQLite's would hold up the workers
            row
            for row in rows
            if args.every_version or row.source.id in unverified or not _checksum_holds(row.version)
        ]
        with sessions() as session, session.begin():
            jobs = {
                row.version.path: enqueue_job(session, JobKind.VERIFY, row.source.id)[0].id
                for row in to_decode
            }
        states = run_as_asked(args, sessions, list(jobs.values()), JobKind.VERIFY, "verifying")
        with sessions() as session:
            reasons = dict(
                session.execute(
                    select(Job.id, func.coalesce(Job.quarantine_reason, Job.last_error)).where(
                        Job.id.in_(list(jobs.values()))
                    )
                ).all()
            )
    failures = [
        {"archive_path": path, "job_id": job_id, "state": states[job_id].value, "reason": reasons.get(job_id)}
        for path, job_id in jobs.items()
        if states[job_id] is not JobState.DONE
    ]
    report = {"checked": len(rows), "decoded": len(jobs), "ok": len(rows) - len(failures), "failed": failures}
    if args.json:
        output.print_json(report)
    else:
        if failures:
            output.table(
                "failed",
                ["archive", "job", "reason"],
                [(f["archive_path"], f["job_id"], f["reason"]) for f in failures],
            )
        output.stdout().print(
            f"checked {report['checked']} archive file(s), decoded {report['decoded']}: "
            f"{report['ok']} ok, {len(failures)} failed"
        )
    return output.SOME_FAILED if failures else output.OK


# retry -------------------------------------------------------------------------------------


def retry(args: argparse.Namespace) -> int:
    states = [JobState.FAILED] if args.failed or not args.quarantined else []
    if args.quarantined:
        states.append(JobState.QUARANTINED)
    with open_catalog() as sessions, sessions() as session, session.begin():
        query = select(Job).where(Job.state.in_(states)).order_by(Job.id).with_for_update()
        if args.job_ids:
            query = query.where(Job.id.in_(args.job_ids))
        jobs = list(session.scalars(query))
        for job in jobs:
            _reset(session, job)
        again = [(job.id, job.kind) for job in jobs]
        stuck = session.scalar(
            select(func.count())
            .select_from(Source)
            .where(Source.state == SourceState.QUARANTINED, ~exists().where(Job.source_id == Source.id))
        )
    sent = sum(publish(job_id, kind) for job_id, kind in again)
    console = output.stdout()
    console.print(
        f"{len(again)} job(s) pending again; {sent} sent to the workers"
        + ("" if sent == len(again) else " (the workers' reaper sends the rest)")
    )
    if args.quarantined and stuck:
        console.print(
            f"{stuck} quarantined source(s) have no job (they did not decode when found): "
            "replace the file and the watcher takes it again"
        )
    if args.job_ids and len(again) < len(set(args.job_ids)):
        output.error("retry", "some of the given jobs are not in the chosen states (see `aic-admin status`)")
        return output.SOME_FAILED
    return output.OK


def _reset(session: Session, job: Job) -> None:
    if job.state is JobState.QUARANTINED:
        job.attempts = 0
        job.quarantine_reason = None
        job.finished_at = None
        source = session.get(Source, job.source_id)
        if source is not None and source.state is SourceState.QUARANTINED:
            has_version = session.scalar(
                select(
                    exists().where(
                        and_(ArchiveVersion.source_id == source.id, ArchiveVersion.superseded_by.is_(None))
                    )
                )
            )
            source.state = SourceState.ARCHIVED if has_version else SourceState.NEW
            source.reason = None
    job.state = JobState.PENDING
    job.not_before = None


# models ------------------------------------------------------------------------------------


def _model_records(session: Session) -> list[dict[str, Any]]:
    versions = dict(
        session.execute(select(ArchiveVersion.model_id, func.count()).group_by(ArchiveVersion.model_id)).all()
    )
    jobs = dict(session.execute(select(Job.model_id, func.count()).group_by(Job.model_id)).all())
    return [
        {
            "id": m.id,
            "path": m.path,
            "default": m.is_default,
            "created_at": m.created_at,
            "archive_versions": versions.get(m.id, 0),
            "jobs": jobs.get(m.id, 0),
            "file_present": os.path.isfile(m.path),
        }
        for m in session.scalars(select(CodecModel).order_by(CodecModel.created_at))
    ]


def models_list(args: argparse.Namespace) -> int:
    records = read_catalog(_model_records)
    if output.printed_json(args, records):
        return output.OK
    output.table(
        "models",
        ["id", "default", "archives", "jobs", "file", "path"],
        [
            (
                r["id"][:16],
                "yes" if r["default"] else "",
                r["archive_versions"],
                r["jobs"],
                "ok" if r["file_present"] else "MISSING",
                r["path"],
            )
            for r in records
        ],
    )
    return output.OK


def _resolve(session: Session, prefix: str) -> str:
    ids = list(session.scalars(select(CodecModel.id).where(CodecModel.id.startswith(prefix.lower()))))
    if len(ids) != 1:
        raise CommandError(f"{prefix!r} names {'no model' if not ids else f'{len(ids)} models'}")
    return ids[0]


def models_import(args: argparse.Namespace) -> int:
    from aic_worker.codec.weights import load_model_bytes  # torch: only for this command

    data = args.file.read_bytes()
    try:
        _, model_id = load_model_bytes(data)
    except Exception as error:
        raise CommandError(f"{args.file} is not a codec weights file: {error}") from error
    if hashlib.sha256(data).hexdigest() != model_id:
        raise CommandError(f"{args.file}: its model id is not its sha256")
    path = args.file.expanduser().resolve() if args.no_copy else _keep_copy(data, model_id)
    with open_catalog() as sessions, sessions() as session, session.begin():
        model = register_model(session, model_id, str(path), make_default=args.default)
        is_default = model.is_default
    output.stdout().print(
        f"model {model_id} at {path}" + (" (default)" if is_default else ""), highlight=False
    )
    return output.OK


def _keep_copy(data: bytes, model_id: str) -> Path:
    """The weights under AIC_HOME/models/<sha256>.safetensors, written durably (never changed later)."""
    folder = (data_dir() / "models").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{model_id}.safetensors"
    if target.is_file() and file_sha256(target) == model_id:
        return target
    temp = folder / f".{model_id}.{os.getpid()}.tmp"
    with open(temp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, target)
    fsync_directory(folder)
    return target


def models_set_default(args: argparse.Namespace) -> int:
    with open_catalog() as sessions, sessions() as session, session.begin():
        model_id = _resolve(session, args.model)
        set_default_model(session, model_id)
    output.stdout().print(f"default model: {model_id}", highlight=False)
    return output.OK


def models_remove(args: argparse.Namespace) -> int:
    with open_catalog() as sessions, sessions() as session, session.begin():
        model_id = _resolve(session, args.model)
        path = Path(session.get(CodecModel, model_id).path)
        try:
            remove_model(session, model_id)
        except ModelInUseError as error:
            raise CommandError(f"refused: {error}; it is needed to decode them") from error
    if path.parent == (data_dir() / "models").resolve():
        path.unlink(missing_ok=True)  # the copy `models import` made
    output.stdout().print(f"removed model {model_id}", highlight=False)
    return output.OK
