"""`aic-admin recompress --ratio R`: archived sources to a new ratio, bytes saved.

For each selected source with a current archive version, the plan is one of
- `encode`: its original is still on disk (the worker checks its sha256), so it is encoded
  again from it, with the default model;
- `truncate`: the original is gone and R is above the file's achieved ratio, so the stored
  file is cut down to R (no decoding; same model);
- `skip`: already at ratio R with that model, or (no original) already smaller than R asks;
- `refuse`: the original is gone and R is lower: bits that were dropped can't come back.

Then RECOMPRESS jobs run through the workers or in this process (job_batch.py). The pipeline
writes the new version beside the old one, verifies it, and commits it as current; only
then is the old version superseded (its file stays). A version at ratio R is at most
W·H·3/R bytes, which is the estimate `--dry-run` gives; the summary counts real bytes.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from aic_watch.options import add_ratio_option
from aic_worker.admin import output
from aic_worker.admin.catalog_access import open_catalog
from aic_worker.admin.job_batch import Holder, add_execution_arguments, run_batch, runs_locally
from aic_worker.admin.selection import Selection, add_selection_arguments
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import ArchiveVersion, JobKind, JobState, Source, SourcePath
from aic_worker.catalog.overview import CURRENT, SourceRow, source_rows
from aic_worker.model_choice import NoModelError, model_for_new_jobs

COMMAND = "recompress"
WORK = ("encode", "truncate")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        COMMAND,
        help="archive sources again at another ratio (from the original, or by truncation)",
        description="Archive the selected sources again at ratio R: from the original when it is still "
        "there, else by truncating the stored file (towards a higher ratio only). The old version "
        "stays until the new one is verified and committed.",
    )
    add_ratio_option(p, required=True, meaning="the new target ratio")
    add_selection_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="show the plan and the bytes it would save")
    add_execution_arguments(p)
    p.add_argument("--json", action="store_true", help="print the plan (and outcome) as JSON")
    p.set_defaults(func=recompress)


@dataclass(frozen=True)
class Item:
    id: int
    source_path: str | None
    action: str  # encode, truncate, skip, refuse
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


def _original_present(source: Source, paths: list[SourcePath]) -> bool:
    """A path not marked removed holds a regular file of the recorded size (the worker checks the hash)."""
    for path in paths:
        if path.removed_at is None:
            try:
                st = os.stat(path.path, follow_symlinks=False)
            except OSError:
                continue
            if st.st_size == source.size:
                return True
    return False


def plan(session: Session, row: SourceRow, ratio: float, new_model: str) -> Item:
    version = row.version
    assert version is not None
    raw = round(version.achieved_ratio * version.bytes)  # W·H·3
    budget = min(version.bytes, math.floor(raw / ratio))
    paths = list(session.scalars(select(SourcePath).where(SourcePath.source_id == row.source.id)))

    def item(action: str, why: str, model: str, after: int) -> Item:
        path = row.path.path if row.path else None
        return Item(row.source.id, path, action, why, model, version.achieved_ratio, version.bytes, after)

    if _original_present(row.source, paths):
        if math.isclose(version.target_ratio, ratio) and version.model_id == new_model:
            return item("skip", f"already at ratio {ratio:g}", version.model_id, version.bytes)
        return item("encode", "from the original", new_model, math.floor(raw / ratio))
    if math.isclose(version.target_ratio, ratio) or version.achieved_ratio >= ratio > version.target_ratio:
        return item("skip", f"already at ratio {ratio:g} or above", version.model_id, version.bytes)
    if ratio > version.achieved_ratio:
        return item("truncate", "the original is gone: truncating the stored file", version.model_id, budget)
    return item(
        "refuse",
        f"the original is gone and the archive is at ratio {version.achieved_ratio:.2f}: "
        f"without the original it can only go to a higher ratio",
        version.model_id,
        version.bytes,
    )


def recompress(args: argparse.Namespace) -> int:
    selection = Selection.from_args(args)
    if not selection.given:
        return output.usage_error(
            COMMAND, "say which sources: --id, --folder, --older-than, --below-ratio or --all"
        )
    if not args.ratio > 1 or not math.isfinite(args.ratio):
        return output.usage_error(COMMAND, f"--ratio must be a number above 1, got {args.ratio:g}")
    with open_catalog() as sessions:
        with sessions() as session, session.begin():
            try:
                new_model = model_for_new_jobs(session).id
            except NoModelError as error:
                output.error(COMMAND, str(error))
                return output.SOME_FAILED
            rows = list(source_rows(session, CURRENT.id.is_not(None), *selection.conditions()))
            items = [plan(session, row, args.ratio, new_model) for row in rows]
        report: dict[str, Any] = {"ratio": args.ratio, "dry_run": args.dry_run, **_plan_summary(items)}
        if not args.dry_run:
            report.update(_carry_out(sessions, items, args))
    _show(report, args.json)
    failed = report["refused"] + report.get("failed", 0)
    return output.SOME_FAILED if failed else output.OK


def _plan_summary(items: list[Item]) -> dict[str, Any]:
    work = [i for i in items if i.action in WORK]
    return {
        "items": [i.record() for i in items],
        "selected": len(items),
        "to_encode": sum(i.action == "encode" for i in items),
        "to_truncate": sum(i.action == "truncate" for i in items),
        "skipped": sum(i.action == "skip" for i in items),
        "refused": sum(i.action == "refuse" for i in items),
        "bytes_before": sum(i.bytes_before for i in work),
        "bytes_saved_at_least": sum(i.bytes_before - i.bytes_after_at_most for i in work),
    }


def _carry_out(
    sessions: sessionmaker[Session], items: list[Item], args: argparse.Namespace
) -> dict[str, Any]:
    work = [i for i in items if i.action in WORK]
    local = bool(work) and runs_locally(args)
    holder = Holder.new() if local else None  # jobs run here are ours from the start (job_batch.py)
    jobs: dict[int, int] = {}
    with sessions() as session, session.begin():
        for item in work:
            job, _ = enqueue_job(
                session, JobKind.RECOMPRESS, item.id, target_ratio=args.ratio, model_id=item.model_id
            )
            if holder is not None:
                holder.hold(session, job.id)
            jobs[item.id] = job.id
    states = run_batch(
        sessions,
        list(jobs.values()),
        JobKind.RECOMPRESS,
        local=local,
        device=args.device,
        description=f"recompressing to {args.ratio:g}",
        holder=holder,
    )
    done = [source_id for source_id, job_id in jobs.items() if states[job_id] is JobState.DONE]
    before = {i.id: i.bytes_before for i in work}
    with sessions() as session:
        after = dict(
            session.execute(
                select(ArchiveVersion.source_id, ArchiveVersion.bytes).where(
                    ArchiveVersion.source_id.in_(done), ArchiveVersion.superseded_by.is_(None)
                )
            ).all()
        )
    return {
        "done": len(done),
        "failed": len(jobs) - len(done),
        "failures": [
            {"id": source_id, "job_id": job_id, "state": states[job_id].value}
            for source_id, job_id in jobs.items()
            if states[job_id] is not JobState.DONE
        ],
        "bytes_saved": sum(before[s] - after[s] for s in done),
        "bytes_after": sum(after.values()),
    }


def _show(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.print_json(report)
        return
    rows = [
        (
            i["id"],
            i["source_path"],
            i["from_ratio"],
            i["action"],
            output.human_bytes(i["bytes_before"]),
            output.human_bytes(i["bytes_after_at_most"]),
            i["why"],
        )
        for i in report["items"]
    ]
    output.table(
        f"recompress to ratio {report['ratio']:g}" + (" (dry run)" if report["dry_run"] else ""),
        ["id", "source", "ratio now", "action", "bytes now", "after (at most)", "why"],
        rows,
    )
    console = output.stdout()
    console.print(
        f"{report['selected']} selected: {report['to_encode']} from originals, {report['to_truncate']} by "
        f"truncation, {report['skipped']} skipped, {report['refused']} refused"
    )
    if report["dry_run"]:
        console.print(f"would save at least {output.human_bytes(report['bytes_saved_at_least'])}")
        return
    console.print(
        f"recompressed {report['done']}, failed {report['failed']}; saved "
        f"{output.human_bytes(report['bytes_saved'])}"
    )
    for failure in report["failures"]:
        console.print(
            f"  source {failure['id']}: job {failure['job_id']} {failure['state']} "
            f"(`aic-admin show {failure['id']}` says why)"
        )
    if report["refused"]:
        console.print("refused: lower ratios need the original (see the table's last column)")
