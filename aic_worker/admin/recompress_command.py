"""`aic-admin recompress --ratio R [--method auto|truncate]`: archived sources to a new ratio, bytes freed.

For each selected source with a current archive version, the plan is one of
- `encode`: its original is still on disk (the worker checks its sha256), or its current
  version is a passthrough (the original's bytes), so it is encoded again from it, with the
  default model;
- `reencode` (`--method auto`, the default, when the original is gone): the stored version
  is decoded and that image encoded at R, with the default model; its quality is measured
  against the stored version (16x to 64x: 0.08–0.34 dB below a fresh encode of the
  original, where truncation is 2.1–5.7 dB below it; README, bench/lifecycle.py);
- `truncate` (`--method truncate`, the explicit choice for speed where no encoder should
  run): the stored `.aic` is cut down to R (same model; towards a higher ratio only);
- `skip`: already at ratio R with that model, or (no original) already smaller than R asks;
- `refuse`: the original is gone and R is lower: bits that were dropped can't come back
  (or a truncation of a passthrough, which holds no `.aic`).

Then RECOMPRESS jobs (parameters: the method, `--keep-versions`) run through the workers or
in this process (job_batch.py). The pipeline writes the new version beside the old one,
verifies it, commits it as current, and then deletes the superseded files beyond
keep-versions (default: the most any of the source's jobs asked for, else 1; a run's
`--keep-versions` is remembered as such an ask, so a later prune keeps it). A version at
ratio R is at most W·H·3/R bytes, which is the estimate `--dry-run` gives; the summary
counts the bytes really freed (the sources' files on disk before, less after).
"""

from __future__ import annotations

import argparse
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from aic_watch.options import add_ratio_option
from aic_worker.admin import output
from aic_worker.admin.catalog_access import catalog_engine
from aic_worker.admin.job_batch import Holder, add_execution_arguments, run_batch, runs_locally
from aic_worker.admin.selection import Selection, add_selection_arguments
from aic_worker.catalog.engine import reading, session_factory
from aic_worker.catalog.jobs import ACTIVE_STATES, RATIO_DECIMALS
from aic_worker.catalog.models import (
    ArchiveKind,
    ArchiveVersion,
    Job,
    JobKind,
    JobState,
    Source,
    SourcePath,
    utcnow,
)
from aic_worker.catalog.overview import CURRENT, PRIMARY, with_primary
from aic_worker.jobs.parameters import Method, RecompressParameters
from aic_worker.model_choice import NoModelError, model_for_new_jobs

COMMAND = "recompress"
WORK = ("encode", "reencode", "truncate")
BATCH = 2000  # sources planned, and jobs created, per transaction


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        COMMAND,
        help="archive sources again at another ratio (from the original, else from the stored version)",
        description="Archive the selected sources again at ratio R: from the original when it is still "
        "there, else (--method auto) by decoding the stored version and encoding that, or (--method "
        "truncate) by truncating the stored file; without the original, towards a higher ratio only. "
        "The old version's file is deleted once the new one is verified and committed (unless "
        "--keep-versions says to keep more).",
    )
    add_ratio_option(p, required=True, meaning="the new target ratio")
    p.add_argument(
        "--method",
        choices=[m.value for m in Method],
        default=Method.AUTO.value,
        help="where the original is gone: auto (default) decodes the stored version and encodes it "
        "again; truncate cuts the stored file down (no encoder, same model, 2–6 dB worse at 64x)",
    )
    p.add_argument(
        "--keep-versions",
        type=int,
        metavar="N",
        help="keep the files of the newest N intact versions, the new one included; later runs without "
        "it, and prune, keep at least as many (default: the most any of the source's jobs asked for, else 1)",
    )
    add_selection_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="show the plan and the bytes it would save")
    add_execution_arguments(p)
    p.add_argument("--json", action="store_true", help="print the plan (and outcome) as JSON")
    p.set_defaults(func=recompress)


@dataclass(frozen=True)
class Item:
    id: int
    source_path: str | None
    action: str  # encode, reencode, truncate, skip, refuse
    why: str
    model_id: str
    from_ratio: float
    bytes_before: int
    bytes_after_at_most: int

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source_path": self.source_path,
            "action": self.action,
            "why": self.why,
            "from_ratio": self.from_ratio,
            "bytes_before": self.bytes_before,
            "bytes_after_at_most": self.bytes_after_at_most,
            "bytes_saved_at_least": self.bytes_before - self.bytes_after_at_most,
        }


@dataclass(frozen=True)
class Candidate:
    """A selected source as plan() weighs it: plain values, for millions are planned."""

    id: int
    size: int
    source_path: str | None  # its primary path
    version: Row[Any]  # its current version: achieved_ratio, bytes, target_ratio, model_id, kind
    paths: Sequence[Row[Any]]  # every path it was found at: path, removed_at


def _original_present(size: int, paths: Sequence[Row[Any]]) -> bool:
    """A path not marked removed holds a regular file of the recorded size (the worker checks the hash)."""
    for path in paths:
        if path.removed_at is None:
            try:
                st = os.stat(path.path, follow_symlinks=False)
            except OSError:
                continue
            if st.st_size == size:
                return True
    return False


def plan(candidate: Candidate, ratio: float, new_model: str, method: Method = Method.AUTO) -> Item:
    version = candidate.version
    raw = round(version.achieved_ratio * version.bytes)  # W·H·3
    budget = min(version.bytes, math.floor(raw / ratio))
    passthrough = version.kind == ArchiveKind.PASSTHROUGH

    def item(action: str, why: str, model: str, after: int) -> Item:
        path = candidate.source_path
        return Item(candidate.id, path, action, why, model, version.achieved_ratio, version.bytes, after)

    if method is Method.TRUNCATE and passthrough:
        return item("refuse", "stored as the original's bytes: there is no .aic to truncate (use --method "
                    "auto)", version.model_id, version.bytes)
    if method is not Method.TRUNCATE and (passthrough or _original_present(candidate.size, candidate.paths)):
        if math.isclose(version.target_ratio, ratio) and version.model_id == new_model:
            return item("skip", f"already at ratio {ratio:g}", version.model_id, version.bytes)
        why = "from the original's bytes, stored as they are" if passthrough else "from the original"
        return item("encode", why, new_model, min(candidate.size, math.floor(raw / ratio)))
    if math.isclose(version.target_ratio, ratio) or version.achieved_ratio >= ratio > version.target_ratio:
        return item("skip", f"already at ratio {ratio:g} or above", version.model_id, version.bytes)
    if ratio > version.achieved_ratio and method is Method.TRUNCATE:
        return item("truncate", "truncating the stored file (--method truncate)", version.model_id, budget)
    if ratio > version.achieved_ratio:
        return item("reencode", "the original is gone: the stored version decoded and encoded again",
                    new_model, budget)
    return item(
        "refuse",
        f"the original is gone and the archive is at ratio {version.achieved_ratio:.2f}: "
        f"without the original it can only go to a higher ratio",
        version.model_id,
        version.bytes,
    )


def candidates(
    reads: sessionmaker[Session], conditions: Sequence[ColumnElement[bool]], batch: int = BATCH
) -> Iterator[list[Candidate]]:
    """The selected sources that have a current version, in id order, `batch` at a time.

    Each batch is two queries (its sources after the last id of the one before, then the
    paths in their id range) in a short read-only transaction of its own: memory and locks stay those of
    one batch however large the selection, and a worker's commits never wait on the plan.
    """
    after = 0
    while True:
        with reads() as session:
            rows = session.execute(
                with_primary(
                    select(
                        Source.id, Source.size, PRIMARY.path, CURRENT.achieved_ratio, CURRENT.bytes,
                        CURRENT.target_ratio, CURRENT.model_id, CURRENT.kind,
                    ).select_from(Source)
                )
                .join(CURRENT, and_(CURRENT.source_id == Source.id, CURRENT.superseded_by.is_(None)))
                # the bound on both sides of the join: PostgreSQL merge-joined the versions' index
                # from its start at every batch, when only the sources' side was bounded
                .where(Source.id > after, CURRENT.source_id > after, *conditions)
                .order_by(Source.id)
                .limit(batch)
            ).all()
            if not rows:
                return
            paths: dict[int, list[Row[Any]]] = defaultdict(list)
            for path in session.execute(  # by id range: a list of 2,000 ids took longer to send
                select(SourcePath.source_id, SourcePath.path, SourcePath.removed_at).where(
                    SourcePath.source_id.between(rows[0].id, rows[-1].id)
                )
            ):
                paths[path.source_id].append(path)
        yield [Candidate(row.id, row.size, row.path, row, paths[row.id]) for row in rows]
        after = rows[-1].id


@dataclass
class Totals:
    """The plan's counts, kept as the batches go by (the items themselves are not kept)."""

    selected: int = 0
    to_encode: int = 0
    to_reencode: int = 0
    to_truncate: int = 0
    skipped: int = 0
    refused: int = 0
    bytes_before: int = 0
    bytes_saved_at_least: int = 0

    def add(self, items: Sequence[Item]) -> None:
        self.selected += len(items)
        for i in items:
            if i.action in WORK:
                self.bytes_before += i.bytes_before
                self.bytes_saved_at_least += i.bytes_before - i.bytes_after_at_most
            if i.action == "encode":
                self.to_encode += 1
            elif i.action == "reencode":
                self.to_reencode += 1
            elif i.action == "truncate":
                self.to_truncate += 1
            elif i.action == "skip":
                self.skipped += 1
            else:
                self.refused += 1


class Jobs:
    """The RECOMPRESS jobs of the plan's work, created a batch at a time as the plan streams."""

    def __init__(self, sessions: sessionmaker[Session], args: argparse.Namespace) -> None:
        self.sessions, self.args = sessions, args
        self.local: bool | None = None  # decided at the first work: no work, no question to the broker
        self.holder: Holder | None = None
        self.parameters = RecompressParameters(  # every job's parameters
            Method(args.method), args.keep_versions
        ).to_json()
        self.by_source: dict[int, int] = {}  # source id -> job id
        self.bytes_before: dict[int, int] = {}  # source id -> bytes of its files on disk

    def create(self, items: Sequence[Item]) -> None:
        """One transaction per batch: the jobs already waiting for this work are found with one
        query, the others inserted with one statement; a local run holds each from the start
        (job_batch.py)."""
        work = [i for i in items if i.action in WORK]
        if not work:
            return
        models = {(i.id, i.model_id) for i in work}
        if self.local is None:
            self.local = runs_locally(self.args)
            self.holder = Holder.new() if self.local else None  # jobs run here are ours from the start
        ratio = round(float(self.args.ratio), RATIO_DECIMALS)
        with self.sessions() as session, session.begin():
            waiting: dict[int, int] = {}  # as catalog/jobs.enqueue_job finds the same work still to do
            for job in session.execute(
                select(Job.source_id, Job.model_id, Job.id, Job.parameters)
                .where(
                    Job.kind == JobKind.RECOMPRESS,
                    Job.source_id.in_([i.id for i in work]),
                    Job.target_ratio == ratio,
                    Job.state.in_(ACTIVE_STATES),
                )
                .order_by(Job.id)
            ):
                if job.parameters == self.parameters and (job.source_id, job.model_id) in models:
                    waiting.setdefault(job.source_id, job.id)
            new = [i for i in work if i.id not in waiting]
            now = utcnow()
            created = session.scalars(
                insert(Job).returning(Job.id, sort_by_parameter_order=True),
                [
                    {
                        "kind": JobKind.RECOMPRESS, "state": JobState.PENDING, "source_id": i.id,
                        "target_ratio": ratio, "model_id": i.model_id, "parameters": self.parameters,
                        "attempts": 0,
                        "created_at": now, "updated_at": now,
                    }
                    for i in new
                ],
            ).all() if new else []
            waiting.update(zip((i.id for i in new), created, strict=True))
            if self.holder is not None:
                for job_id in created:
                    self.holder.hold(session, job_id)
            self.bytes_before.update(_on_disk(session, [i.id for i in work]))
        self.by_source.update(waiting)

    def run(self) -> dict[str, Any]:
        """Run the jobs (workers or here) and count what they saved."""
        jobs = self.by_source
        states = run_batch(
            self.sessions,
            list(jobs.values()),
            JobKind.RECOMPRESS,
            local=bool(self.local),
            device=self.args.device,
            description=f"recompressing to {self.args.ratio:g}",
            holder=self.holder,
        )
        done = [source_id for source_id, job_id in jobs.items() if states[job_id] is JobState.DONE]
        after: dict[int, int] = {}
        with self.sessions() as session:
            for start in range(0, len(done), BATCH):
                after.update(_on_disk(session, done[start : start + BATCH]))
        return {
            "done": len(done),
            "failed": len(jobs) - len(done),
            "failures": [
                {"id": source_id, "job_id": job_id, "state": states[job_id].value}
                for source_id, job_id in jobs.items()
                if states[job_id] is not JobState.DONE
            ],
            "bytes_saved": sum(self.bytes_before[s] - after[s] for s in done),
            "bytes_after": sum(after.values()),
        }


def _on_disk(session: Session, source_ids: Sequence[int]) -> dict[int, int]:
    """Each source's bytes on disk: its versions whose files were not removed."""
    rows = session.execute(
        select(ArchiveVersion.source_id, func.sum(ArchiveVersion.bytes))
        .where(ArchiveVersion.source_id.in_(source_ids), ArchiveVersion.removed_at.is_(None))
        .group_by(ArchiveVersion.source_id)
    )
    return {source_id: int(total) for source_id, total in rows}  # PostgreSQL sums to a Decimal


def recompress(args: argparse.Namespace) -> int:
    selection = Selection.from_args(args)
    if not selection.given:
        return output.usage_error(
            COMMAND, "say which sources: --id, --folder, --older-than, --below-ratio or --all"
        )
    if not args.ratio > 1 or not math.isfinite(args.ratio):
        return output.usage_error(COMMAND, f"--ratio must be a number above 1, got {args.ratio:g}")
    if args.keep_versions is not None and args.keep_versions < 1:
        return output.usage_error(COMMAND, f"--keep-versions must be at least 1, got {args.keep_versions}")
    with catalog_engine() as engine:
        sessions, reads = session_factory(engine), session_factory(reading(engine))
        try:
            with sessions() as session:
                new_model = model_for_new_jobs(session).id
        except NoModelError as error:
            output.error(COMMAND, str(error))
            return output.SOME_FAILED
        totals = Totals()
        jobs = Jobs(sessions, args)

        def planned() -> Iterator[Item]:
            """Each batch planned, counted, its jobs created (unless a dry run), then shown."""
            for batch in candidates(reads, selection.conditions()):
                items = [plan(candidate, args.ratio, new_model, Method(args.method)) for candidate in batch]
                totals.add(items)
                if not args.dry_run:
                    jobs.create(items)
                yield from items

        outcome: dict[str, Any] = {}

        def summary() -> dict[str, Any]:
            if not args.dry_run:
                outcome.update(jobs.run())
            return {**asdict(totals), **outcome}

        head = {"ratio": args.ratio, "dry_run": args.dry_run}
        if args.json:
            output.print_json_streaming(head, "items", (i.record() for i in planned()), summary)
        else:
            _show(head, planned(), summary)
    failed = totals.refused + outcome.get("failed", 0)
    return output.SOME_FAILED if failed else output.OK


def _show(head: dict[str, Any], items: Iterator[Item], summary: Callable[[], dict[str, Any]]) -> None:
    """The plan as a table, printed a chunk at a time as it is made, then the totals."""
    rows = (
        (
            i.id,
            i.source_path,
            i.from_ratio,
            i.action,
            output.human_bytes(i.bytes_before),
            output.human_bytes(i.bytes_after_at_most),
            i.why,
        )
        for i in items
    )
    output.stream_table(
        f"recompress to ratio {head['ratio']:g}" + (" (dry run)" if head["dry_run"] else ""),
        ["id", "source", "ratio now", "action", "bytes now", "after (at most)", "why"],
        rows,
    )
    report = summary()
    console = output.stdout()
    console.print(
        f"{report['selected']} selected: {report['to_encode']} from originals, {report['to_reencode']} from "
        f"stored versions, {report['to_truncate']} by truncation, {report['skipped']} skipped, "
        f"{report['refused']} refused"
    )
    if head["dry_run"]:
        console.print(f"would save at least {output.human_bytes(report['bytes_saved_at_least'])}")
        return
    console.print(
        f"recompressed {report['done']}, failed {report['failed']}; freed "
        f"{output.human_bytes(report['bytes_saved'])} on disk"
    )
    for failure in report["failures"]:
        console.print(
            f"  source {failure['id']}: job {failure['job_id']} {failure['state']} "
            f"(`aic-admin show {failure['id']}` says why)"
        )
    if report["refused"]:
        console.print("refused: lower ratios need the original (see the table's last column)")
