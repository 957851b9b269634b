"""`aic-admin verify | repair | prune | retry | models`: keeping the archive sound.

verify   the sha256 of every current archive file, here; then VERIFY jobs (pipeline.verify:
         the sha256 again, a full decode, and the PSNR against the original when it is still
         there) for the files that failed it, are marked damaged or were never verified since
         written, or for all of them (`--all`). A file that fails is marked damaged
         (damaged_at), one that passes unmarked. Sources are read PAGE at a time (constant
         memory). Exit 1 if any fails.
repair   for each damaged (or missing) current file: a RECOMPRESS job with `repair` at its
         ratio, which checks the file again (a mark may be stale: a file that checks is only
         unmarked), then encodes from the original if it is there, else from the newest
         intact older version (said when that one is coarser). Exit 1, with the reasons, if
         any can't be repaired.
prune    superseded versions' files beyond keep-versions (the most any of a source's jobs
         asked for), damaged ones first, nothing of a source whose current file fails its
         sha256; files of versions marked removed that a crash left (the only intact copy is
         taken back instead); temp files of jobs no live lease holds (store/retention.py).
retry    failed jobs (now, without waiting out their backoff) or quarantined ones (with their
         attempts reset) back to pending, and published, a batch at a time (catalog/retry.py).
models   the codec models the catalog knows: list, import, set the default, remove one that
         no archive version or job uses (invariant 4: one in use is refused).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, exists, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from aic_worker.admin import output
from aic_worker.admin.catalog_access import open_catalog, read_catalog
from aic_worker.admin.job_batch import Holder, add_execution_arguments, run_batch, runs_locally
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
    database_now,
    utcnow,
)
from aic_worker.catalog.overview import CURRENT
from aic_worker.catalog.retry import retry_jobs
from aic_worker.config import WorkerConfig
from aic_worker.jobs.parameters import RecompressParameters
from aic_worker.jobs.queue import publish
from aic_worker.model_choice import find_weights, shipped_models
from aic_worker.store.archive import file_sha256, fsync_directory, remove_version, temp_files
from aic_worker.store.retention import (
    CheckedFiles,
    Retired,
    file_intact,
    holds,
    kept_files,
    kept_versions,
    remove_retired,
    retire_superseded,
)


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

    p = subparsers.add_parser(
        "repair",
        help="make damaged or missing archive files again (exit 1 if any can't be)",
        description="Make the current archive file of each given source (or, with --all, of each one "
        "verify marked damaged) again when it is damaged or missing: from the original if it is still "
        "there (sha256 checked), else from the newest intact older version, at the damaged version's "
        "ratio. The new version replaces it; what could not be repaired is listed, exit 1.",
    )
    p.add_argument("ids", type=int, nargs="*", metavar="ID", help="source ids (checked by their sha256)")
    p.add_argument("--all", dest="everything", action="store_true", help="every source marked damaged")
    add_execution_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=repair)

    p = subparsers.add_parser(
        "prune",
        help="free the space older releases or crashes left: superseded versions' files, temp files",
        description="Delete the files of superseded archive versions beyond each source's keep-versions "
        "(the most any of its jobs asked for: its folder's setting or a recompress's --keep-versions; "
        "default 1, the current version only), files of versions already marked removed that a crash "
        "left, and temp files of jobs no worker holds. Every file is checked by its sha256 first: damaged "
        "versions go first and don't count; a source whose current file is damaged keeps all its older "
        "versions. Current versions are never touched. Reports the bytes really freed.",
    )
    p.add_argument("--keep-versions", type=int, metavar="N",
                   help="keep N intact versions' files per source, the current one included (default: "
                   "the most any of the source's jobs asked for)")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=prune)

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

PAGE = 500  # sources per catalog read: verify, repair and prune hold one page at a time


def _unverified() -> ColumnElement[bool]:
    """No verify job finished since the current version was written."""
    return ~exists().where(
        Job.source_id == Source.id,
        Job.kind == JobKind.VERIFY,
        Job.state == JobState.DONE,
        Job.finished_at >= CURRENT.created_at,
    )


def _checksum_holds(path: str, sha256: str) -> bool:
    try:
        return file_sha256(Path(path)) == sha256
    except OSError:
        return False


_WITH_CURRENT = (CURRENT.source_id == Source.id) & CURRENT.superseded_by.is_(None)


def _pages(
    sessions: sessionmaker[Session], query: Select[Any], key: InstrumentedAttribute[int] = Source.id
) -> Iterator[list[Row[Any]]]:
    """`query`'s rows (its first column `key`, unique) in pages of PAGE by `key`: constant memory."""
    after = 0
    while True:
        with sessions() as session:
            rows = list(session.execute(query.where(key > after).order_by(key).limit(PAGE)))
        if not rows:
            return
        yield rows
        after = rows[-1][0]


class _Runner:
    """Runs each page's jobs where the command line says, deciding (and saying) it once."""

    def __init__(self, args: argparse.Namespace, sessions: sessionmaker[Session]) -> None:
        self.args, self.sessions = args, sessions
        self.local: bool | None = None
        self.holder: Holder | None = None

    def decide(self) -> Holder | None:
        """Where the jobs run; the Holder that holds them from their creation when here (job_batch.py)."""
        if self.local is None:
            self.local = runs_locally(self.args)
            self.holder = Holder.new() if self.local else None
        return self.holder

    def __call__(self, job_ids: list[int], kind: JobKind, description: str) -> dict[int, JobState]:
        if not job_ids:
            return {}
        self.decide()
        return run_batch(self.sessions, job_ids, kind, local=bool(self.local), device=self.args.device,
                         description=description, holder=self.holder)


def _reasons(sessions: sessionmaker[Session], job_ids: list[int]) -> dict[int, str | None]:
    with sessions() as session:
        return dict(
            session.execute(
                select(Job.id, func.coalesce(Job.quarantine_reason, Job.last_error))
                .where(Job.id.in_(job_ids))
            ).all()
        )


def verify(args: argparse.Namespace) -> int:
    selection = Selection.from_args(args)
    query = (
        select(Source.id, CURRENT.path, CURRENT.sha256, CURRENT.damaged_at,
               _unverified().label("unverified"))
        .join(CURRENT, _WITH_CURRENT)
        .where(*selection.conditions())
    )
    checked = decoded = 0
    failures: list[dict[str, Any]] = []
    with open_catalog() as sessions:
        run = _Runner(args, sessions)
        for page in _pages(sessions, query):
            checked += len(page)
            to_decode = [  # checksums are read outside any transaction: SQLite's would hold up the workers
                row for row in page
                if args.every_version or row.unverified or row.damaged_at is not None
                or not _checksum_holds(row.path, row.sha256)
            ]
            with sessions() as session, session.begin():
                jobs = {row.path: enqueue_job(session, JobKind.VERIFY, row.id)[0].id for row in to_decode}
            decoded += len(jobs)
            states = run(list(jobs.values()), JobKind.VERIFY, "verifying")
            failed = {path: job_id for path, job_id in jobs.items() if states[job_id] is not JobState.DONE}
            reasons = _reasons(sessions, list(failed.values()))
            failures += [
                {"archive_path": path, "job_id": job_id, "state": states[job_id].value,
                 "reason": reasons.get(job_id)}
                for path, job_id in failed.items()
            ]
    report = {"checked": checked, "decoded": decoded, "ok": checked - len(failures), "failed": failures}
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
            f"{report['ok']} ok, {len(failures)} failed (marked damaged; `aic-admin repair --all` makes "
            "them again)" if failures else
            f"checked {report['checked']} archive file(s), decoded {report['decoded']}: {report['ok']} ok, "
            "0 failed"
        )
    return output.SOME_FAILED if failures else output.OK


# repair ------------------------------------------------------------------------------------


def _repair_query(ids: list[int] | None) -> Select[Any]:
    """Sources and their current versions to look at: these ids, or those marked damaged."""
    query = select(
        Source.id, CURRENT.id.label("version_id"), CURRENT.path, CURRENT.sha256, CURRENT.damaged_at,
        CURRENT.target_ratio, CURRENT.model_id, CURRENT.achieved_ratio,
    ).join(CURRENT, _WITH_CURRENT)
    return query.where(Source.id.in_(ids)) if ids else query.where(CURRENT.damaged_at.is_not(None))


def _made_from(sessions: sessionmaker[Session], source_id: int, damaged: Row[Any]) -> dict[str, Any] | None:
    """What a finished repair made the source's current version from; None if it made none
    (the file checked again: its mark was cleared). `coarser`: a version at a higher ratio."""
    with sessions() as session:
        current = session.scalars(
            select(ArchiveVersion).where(ArchiveVersion.source_id == source_id,
                                         ArchiveVersion.superseded_by.is_(None))
        ).one()
        if current.id == damaged.version_id:
            return None
        start = None if current.reference_version_id is None else session.get(
            ArchiveVersion, current.reference_version_id
        )
        if start is None:
            return {"from_version": None, "from_ratio": None, "coarser": False}
        coarser = start.achieved_ratio > damaged.achieved_ratio * (1 + 1e-6)
        return {"from_version": start.id, "from_ratio": round(start.achieved_ratio, 2), "coarser": coarser}


def repair(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.everything):
        return output.usage_error("repair", "give source IDs or --all (every source verify marked damaged)")
    repaired: list[dict[str, Any]] = []
    unrepaired: list[dict[str, Any]] = []
    unmarked: list[dict[str, Any]] = []
    found: set[int] = set()
    with open_catalog() as sessions:
        run = _Runner(args, sessions)
        for page in _pages(sessions, _repair_query(args.ids)):
            found.update(row.id for row in page)
            damaged = [  # an id given by hand is checked here: its damage may not be marked yet
                row for row in page
                if row.damaged_at is not None or not _checksum_holds(row.path, row.sha256)
            ]
            holder = run.decide() if damaged else None
            with sessions() as session, session.begin():
                jobs: dict[int, int] = {}
                for row in damaged:
                    if row.damaged_at is None:
                        session.get(ArchiveVersion, row.version_id).damaged_at = utcnow()
                    job, created = enqueue_job(
                        session, JobKind.RECOMPRESS, row.id, target_ratio=row.target_ratio,
                        model_id=row.model_id, parameters=RecompressParameters(repair=True).to_json(),
                    )
                    if created and holder is not None:
                        holder.hold(session, job.id)  # ours from the start, so batched here (job_batch.py)
                    jobs[row.id] = job.id
            states = run(list(jobs.values()), JobKind.RECOMPRESS, "repairing")
            reasons = _reasons(sessions, list(jobs.values()))
            rows = {row.id: row for row in damaged}
            for source_id, job_id in jobs.items():
                record = {"id": source_id, "archive_path": rows[source_id].path, "job_id": job_id,
                          "state": states[job_id].value}
                if states[job_id] is not JobState.DONE:
                    unrepaired.append({**record, "reason": reasons.get(job_id)})
                elif (made := _made_from(sessions, source_id, rows[source_id])) is None:
                    unmarked.append(record)  # its sha256 and decode held after all: nothing replaced
                else:
                    repaired.append({**record, **made, "ratio": round(rows[source_id].achieved_ratio, 2)})
    unrepaired += [
        {"id": i, "archive_path": None, "job_id": None, "state": None,
         "reason": "no such source with an archive"}
        for i in sorted(set(args.ids or ()) - found)
    ]
    report = {"repaired": repaired, "not_repaired": unrepaired, "unmarked": unmarked}
    if args.json:
        output.print_json(report)
    else:
        if unrepaired:
            output.table("not repaired", ["id", "archive", "reason"],
                         [(u["id"], u["archive_path"], u["reason"]) for u in unrepaired])
        console = output.stdout()
        for r in repaired:
            if r["coarser"]:
                console.print(
                    f"  {r['id']} {r['archive_path']}: made again from version {r['from_version']} at ratio "
                    f"{r['from_ratio']:g}, coarser than its own {r['ratio']:g} (the original is gone)",
                    highlight=False,
                )
        console.print(
            f"repaired {len(repaired)} source(s) (a new version from the original, or from the newest "
            f"intact older version"
            + (f", {sum(r['coarser'] for r in repaired)} of them from a coarser one" if repaired else "")
            + f"); {len(unrepaired)} not repaired"
            + (f"; {len(unmarked)} checked again sound: damage mark cleared, nothing replaced"
               if unmarked else "")
        )
    return output.SOME_FAILED if unrepaired else output.OK


# prune -------------------------------------------------------------------------------------


def _temp_folders(sessions: sessionmaker[Session]) -> set[Path]:
    """Every archive root compress jobs name (and the default one): where temp files are left."""
    roots = {WorkerConfig.from_env().archive_root.expanduser()}
    after = 0
    while True:
        with sessions() as session:
            rows = session.execute(
                select(Job.id, Job.parameters)
                .where(Job.kind == JobKind.COMPRESS, Job.id > after)
                .order_by(Job.id)
                .limit(PAGE)
            ).all()
        if not rows:
            return roots
        roots.update(Path(p["archive_root"]) for _, p in rows if isinstance(p.get("archive_root"), str))
        after = rows[-1][0]


def _stray_temps(sessions: sessionmaker[Session], roots: set[Path]) -> Iterator[Path]:
    """Temp files (store/archive.py's names) of jobs that no live lease holds: left by a crash."""
    for root in sorted(roots):
        for folder, _, _ in os.walk(root):
            found = list(temp_files(Path(folder)))
            if not found:
                continue
            with sessions() as session:
                now = database_now(session)
                live = set(
                    session.scalars(
                        select(Job.id).where(
                            Job.id.in_({job for _, job in found}),
                            Job.state == JobState.RUNNING,
                            Job.lease_expires_at > now,
                        )
                    )
                )
            yield from (path for path, job in found if job not in live)


def _size(path: Path) -> int:
    try:
        return path.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0


def _prune_superseded(
    sessions: sessionmaker[Session], page: list[int], keep: int | None, dry_run: bool
) -> tuple[list[Retired], list[str]]:
    """Retire what each source of `page` keeps no more; also the current files found damaged
    (their sources keep every older version: one may be the only intact copy). The files are
    hashed before the transaction (retention.CheckedFiles): SQLite's write lock is not held meanwhile."""
    with sessions() as session:
        files_of_page = kept_files(session, page)
    intact = CheckedFiles(files_of_page)
    files: list[Retired] = []
    damaged: list[str] = []
    with sessions() as session, session.begin():
        for source_id in page:
            files += retire_superseded(session, source_id, keep, intact, dry_run=dry_run)
            current = session.scalars(
                select(ArchiveVersion).where(
                    ArchiveVersion.source_id == source_id, ArchiveVersion.superseded_by.is_(None)
                )
            ).first()
            if current is not None and not intact(current):
                damaged.append(current.path)
    return files, damaged


def _prune_removed(
    sessions: sessionmaker[Session], version_id: int, dry_run: bool
) -> tuple[str, int]:
    """A version marked removed whose file a crash left: ('removed' | 'taken back' | 'left', bytes).

    Its file is deleted if it holds the version's bytes and an intact copy of the source
    stays, or if it holds other bytes and the version was found damaged (an altered copy).
    Holding the only intact copy, it is taken back (removed_at cleared), never deleted.
    """
    with sessions() as session, session.begin():
        version = session.get(ArchiveVersion, version_id, with_for_update=True)
        path, size = Path(version.path), _size(Path(version.path))
        sound = holds(path, version.sha256)
        if sound and not any(map(file_intact, kept_versions(session, version.source_id))):
            if not dry_run:
                version.removed_at = None
            return "taken back", 0
        if not sound and version.damaged_at is None:
            return "left", 0
        if dry_run:
            return "removed", size
        gone = remove_version(path, version.sha256 if sound else None)
    return ("removed", size) if gone else ("left", 0)


def prune(args: argparse.Namespace) -> int:
    if args.keep_versions is not None and args.keep_versions < 1:
        return output.usage_error("prune", f"--keep-versions must be at least 1, got {args.keep_versions}")
    versions = temps = freed = 0
    left: list[str] = []
    taken_back: list[str] = []
    damaged: list[str] = []
    with open_catalog() as sessions:
        # Superseded versions beyond each source's keep-versions, and files of versions marked
        # removed that are still there (a crash between a commit and the deletion).
        query = select(Source.id).where(
            exists().where(
                ArchiveVersion.source_id == Source.id,
                ArchiveVersion.superseded_by.is_not(None),
                ArchiveVersion.removed_at.is_(None),
            )
        )
        for page in _pages(sessions, query):
            files, found = _prune_superseded(sessions, [source_id for (source_id,) in page],
                                             args.keep_versions, args.dry_run)
            damaged += found
            versions += len(files)
            freed += sum(_size(r.path) for r in files) if args.dry_run else remove_retired(files)
        removed = select(ArchiveVersion.id, ArchiveVersion.path).where(ArchiveVersion.removed_at.is_not(None))
        for page in _pages(sessions, removed, ArchiveVersion.id):
            for row in page:
                if not Path(row.path).is_file():
                    continue
                outcome, size = _prune_removed(sessions, row.id, args.dry_run)
                if outcome == "removed":
                    versions += 1
                    freed += size
                else:
                    (taken_back if outcome == "taken back" else left).append(row.path)
        for path in _stray_temps(sessions, _temp_folders(sessions)):
            temps += 1
            freed += _size(path)
            if not args.dry_run:
                path.unlink(missing_ok=True)
    report = {"dry_run": args.dry_run, "version_files": versions, "temp_files": temps, "bytes_freed": freed,
              "left": left, "taken_back": taken_back, "current_damaged": damaged}
    if args.json:
        output.print_json(report)
        return output.OK
    console = output.stdout()
    console.print(
        f"{'would remove' if args.dry_run else 'removed'} {versions} superseded version file(s) and {temps} "
        f"temp file(s): {output.human_bytes(freed)} {'to free' if args.dry_run else 'freed'}"
    )
    for path in left:
        console.print(f"  {path}: holds other bytes than its removed version: left", highlight=False)
    for path in taken_back:
        console.print(f"  {path}: the only intact copy of its image: kept as a version again",
                      highlight=False)
    for path in damaged:
        console.print(f"  {path}: damaged or missing: its older versions are all kept (aic-admin repair)",
                      highlight=False)
    return output.OK


# retry -------------------------------------------------------------------------------------


def retry(args: argparse.Namespace) -> int:
    states = [JobState.FAILED] if args.failed or not args.quarantined else []
    if args.quarantined:
        states.append(JobState.QUARANTINED)
    with open_catalog() as sessions, sessions() as session:
        retried = retry_jobs(session, publish, states, job_ids=args.job_ids or None)
        stuck = session.scalar(
            select(func.count())
            .select_from(Source)
            .where(Source.state == SourceState.QUARANTINED, ~exists().where(Job.source_id == Source.id))
        )
    console = output.stdout()
    console.print(
        f"{retried.count} job(s) pending again; {retried.published} sent to the workers"
        + ("" if retried.published == retried.count else " (the workers' reaper sends the rest)")
    )
    if args.quarantined and stuck:
        console.print(
            f"{stuck} quarantined source(s) have no job (they did not decode when found): "
            "replace the file and the watcher takes it again"
        )
    if args.job_ids and retried.count < len(set(args.job_ids)):
        output.error("retry", "some of the given jobs are not in the chosen states (see `aic-admin status`)")
        return output.SOME_FAILED
    return output.OK


# models ------------------------------------------------------------------------------------


def _model_records(session: Session) -> list[dict[str, Any]]:
    versions = dict(
        session.execute(select(ArchiveVersion.model_id, func.count()).group_by(ArchiveVersion.model_id)).all()
    )
    jobs = dict(session.execute(select(Job.model_id, func.count()).group_by(Job.model_id)).all())
    records = []
    for m in session.scalars(select(CodecModel).order_by(CodecModel.created_at)):
        found = find_weights(session, m.id)[0]    # by sha256: a recorded path may hold another model now
        records.append({
            "id": m.id,
            "path": str(found or m.path),
            "default": m.is_default,
            "created_at": m.created_at,
            "archive_versions": versions.get(m.id, 0),
            "jobs": jobs.get(m.id, 0),
            "file_present": found is not None,
        })
    return records


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


def _resolve(session: Session, prefix: str, shipped: dict[str, Path] | None = None) -> str:
    """The one model id that starts with ``prefix``, among the catalog's and ``shipped``'s."""
    wanted = prefix.strip().lower()
    ids = set(session.scalars(select(CodecModel.id).where(CodecModel.id.startswith(wanted, autoescape=True))))
    ids |= {i for i in shipped or {} if i.startswith(wanted)}
    if not wanted or len(ids) != 1:
        raise CommandError(f"{prefix!r} names {f'{len(ids)} models' if wanted and ids else 'no model'}")
    return ids.pop()


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
    """A model the catalog knows, or one the package ships and the catalog has not met yet
    (after an upgrade the catalog keeps its old default until told: `set-default <new id>`)."""
    shipped = shipped_models()
    with open_catalog() as sessions, sessions() as session, session.begin():
        model_id = _resolve(session, args.model, shipped)
        if session.get(CodecModel, model_id) is None:
            register_model(session, model_id, str(shipped[model_id]))
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
