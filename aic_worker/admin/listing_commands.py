"""`aic-admin ls | show | stats | quarantine`: reading the catalog. Torch-free; nothing is changed.

The JSON each prints with `--json` is specified in docs/cli.md; keys are only ever added.
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aic_worker.admin import output
from aic_worker.admin.catalog_access import open_catalog, read_catalog
from aic_worker.admin.selection import Selection, add_selection_arguments
from aic_worker.catalog.models import ArchiveVersion, Job, JobState, Source, SourcePath, SourceState
from aic_worker.catalog.overview import STATES, SourceRow, source_rows

RATIO_BUCKETS = (8, 16, 32, 64, 128, 256)  # histogram edges of achieved ratios


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "ls",
        help="list sources: state, ratio, archive file, PSNR",
        description="List the catalog's sources, one line (or JSON object) each.",
    )
    add_selection_arguments(p, with_all=False)
    p.add_argument("--state", choices=STATES, help="only sources in this state")
    p.add_argument("--json", action="store_true", help="a JSON array, one object per source")
    p.set_defaults(func=ls)

    p = subparsers.add_parser("show", help="everything about one source: paths, versions, jobs")
    p.add_argument("id", type=int, metavar="ID", help="source id (see `aic-admin ls`)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=show)

    p = subparsers.add_parser(
        "stats", help="files, bytes in and out, space saved, ratio and PSNR, per folder"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=stats)

    p = subparsers.add_parser("quarantine", help="what was set aside, and why")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=quarantine)


def source_record(row: SourceRow) -> dict[str, Any]:
    """One source as `ls --json` prints it."""
    source, version, job = row.source, row.version, row.job
    unfinished = job is not None and job.state is not JobState.DONE
    target = (
        job.target_ratio if unfinished and job.target_ratio else version.target_ratio if version else None
    )
    return {
        "id": source.id,
        "source_path": row.path.path if row.path else None,
        "folder": row.path.folder if row.path else None,
        "state": row.state,
        "target_ratio": target,
        "achieved_ratio": version.achieved_ratio if version else None,
        "archive_path": version.path if version else None,
        "archive_bytes": version.bytes if version else None,
        "psnr": version.psnr if version else None,
        "ms_ssim": version.ms_ssim if version else None,
        "model_id": version.model_id if version else None,
        "archived_at": version.created_at if version else None,
        "source_bytes": source.size,
        "sha256": source.sha256,
        "width": source.width,
        "height": source.height,
        "reason": row.reason,
    }


def ls(args: argparse.Namespace) -> int:
    selection = Selection.from_args(args)
    with open_catalog() as sessions, sessions() as session:
        records = [source_record(row) for row in source_rows(session, *selection.conditions())]
    if args.state:
        records = [r for r in records if r["state"] == args.state]
    if args.json:
        output.print_json(records)
        return output.OK
    output.table(
        None,
        ["id", "state", "source", "ratio", "achieved", "archive", "bytes", "PSNR"],
        [
            (
                r["id"],
                r["state"],
                r["source_path"],
                r["target_ratio"],
                r["achieved_ratio"],
                r["archive_path"],
                r["archive_bytes"],
                r["psnr"],
            )
            for r in records
        ],
    )
    return output.OK


def show(args: argparse.Namespace) -> int:
    with open_catalog() as sessions, sessions() as session:
        rows = list(source_rows(session, Source.id == args.id))
        if not rows:
            output.error("show", f"no source with id {args.id}")
            return output.SOME_FAILED
        report = _details(session, rows[0])
    if args.json:
        output.print_json(report)
        return output.OK
    console = output.stdout()
    for key, value in report.items():
        if not isinstance(value, list):
            console.print(f"{key:>15}: {output.cell_text(value)}", highlight=False)
    shown = {
        "paths": ["path", "mtime", "removed_at"],
        "versions": [
            "id",
            "path",
            "bytes",
            "target_ratio",
            "achieved_ratio",
            "psnr",
            "ms_ssim",
            "created_at",
            "current",
        ],
        "jobs": ["id", "kind", "state", "target_ratio", "attempts", "finished_at", "error"],
    }
    for name, columns in shown.items():
        if report[name]:
            output.table(name, columns, [[entry[c] for c in columns] for entry in report[name]])
    return output.OK


def _details(session: Session, row: SourceRow) -> dict[str, Any]:
    source_id = row.source.id
    paths = session.scalars(
        select(SourcePath).where(SourcePath.source_id == source_id).order_by(SourcePath.id)
    )
    versions = session.scalars(
        select(ArchiveVersion).where(ArchiveVersion.source_id == source_id).order_by(ArchiveVersion.id)
    )
    jobs = session.scalars(select(Job).where(Job.source_id == source_id).order_by(Job.id))
    return {
        **source_record(row),
        "paths": [
            {"path": p.path, "folder": p.folder, "mtime": p.mtime, "removed_at": p.removed_at} for p in paths
        ],
        "versions": [
            {
                "id": v.id,
                "path": v.path,
                "bytes": v.bytes,
                "target_ratio": v.target_ratio,
                "achieved_ratio": v.achieved_ratio,
                "psnr": v.psnr,
                "ms_ssim": v.ms_ssim,
                "model_id": v.model_id,
                "sha256": v.sha256,
                "created_at": v.created_at,
                "current": v.superseded_by is None,
            }
            for v in versions
        ],
        "jobs": [
            {
                "id": j.id,
                "kind": j.kind.value,
                "state": j.state.value,
                "target_ratio": j.target_ratio,
                "attempts": j.attempts,
                "created_at": j.created_at,
                "finished_at": j.finished_at,
                "error": j.quarantine_reason or j.last_error,
            }
            for j in jobs
        ],
    }


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty sequence."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def distribution(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "p10": _quantile(ordered, 0.1),
        "median": _quantile(ordered, 0.5),
        "p90": _quantile(ordered, 0.9),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


def _histogram(ratios: Sequence[float]) -> list[dict[str, Any]]:
    edges = [0, *RATIO_BUCKETS, None]
    return [
        {"from": low, "to": high, "files": sum(low <= r and (high is None or r < high) for r in ratios)}
        for low, high in itertools.pairwise(edges)
    ]


def _totals(rows: Sequence[SourceRow]) -> dict[str, Any]:
    archived = [r for r in rows if r.version is not None]
    bytes_in = sum(r.source.size for r in archived)
    bytes_out = sum(r.version.bytes for r in archived)
    raw = sum(r.version.achieved_ratio * r.version.bytes for r in archived)
    return {
        "files": len(archived),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "space_saved": bytes_in - bytes_out,
        "overall_ratio": raw / bytes_out if bytes_out else None,
    }


def collect_stats(session: Session) -> dict[str, Any]:
    rows = list(source_rows(session))
    archived = [r for r in rows if r.version is not None]
    ratios = [r.version.achieved_ratio for r in archived]
    by_folder: dict[str | None, list[SourceRow]] = defaultdict(list)
    for row in rows:
        by_folder[row.path.folder if row.path else None].append(row)
    states = dict.fromkeys(STATES, 0)
    for row in rows:
        states[row.state] += 1
    return {
        **_totals(rows),
        "sources": len(rows),
        "states": states,
        "ratio": distribution(ratios),
        "ratio_histogram": _histogram(ratios),
        "psnr": distribution([r.version.psnr for r in archived]),
        "folders": [
            {"folder": folder, **_totals(members), "sources": len(members)}
            for folder, members in sorted(by_folder.items(), key=lambda item: item[0] or "")
        ],
    }


def stats(args: argparse.Namespace) -> int:
    report = read_catalog(collect_stats)
    if output.printed_json(args, report):
        return output.OK
    console = output.stdout()
    saved = report["space_saved"]
    share = f" ({saved / report['bytes_in']:.1%})" if report["bytes_in"] else ""
    console.print(
        f"{report['files']} files archived of {report['sources']} sources; "
        f"{output.human_bytes(report['bytes_in'])} in, {output.human_bytes(report['bytes_out'])} out, "
        f"{output.human_bytes(saved)} saved{share}",
        highlight=False,
    )
    console.print("states: " + ", ".join(f"{k} {v}" for k, v in report["states"].items()), highlight=False)
    dists = [(name, report[name]) for name in ("ratio", "psnr") if report[name]]
    if dists:
        output.table(
            "distribution",
            ["", "min", "p10", "median", "p90", "max", "mean"],
            [(name, *d.values()) for name, d in dists],
        )
    output.table(
        "per folder",
        ["folder", "sources", "archived", "bytes in", "bytes out", "saved", "ratio"],
        [
            (
                f["folder"],
                f["sources"],
                f["files"],
                output.human_bytes(f["bytes_in"]),
                output.human_bytes(f["bytes_out"]),
                output.human_bytes(f["space_saved"]),
                f["overall_ratio"],
            )
            for f in report["folders"]
        ],
    )
    return output.OK


def collect_quarantine(session: Session) -> dict[str, Any]:
    sources = [
        {"id": row.source.id, "source_path": row.path.path if row.path else None, "reason": row.source.reason}
        for row in source_rows(session, Source.state == SourceState.QUARANTINED)
    ]
    jobs = session.execute(
        select(Job, SourcePath.path)
        .outerjoin(SourcePath, SourcePath.source_id == Job.source_id)
        .where(Job.state == JobState.QUARANTINED)
        .order_by(Job.id, SourcePath.id)
    ).all()
    seen: dict[int, dict[str, Any]] = {}
    for job, path in jobs:
        seen.setdefault(
            job.id,
            {
                "job_id": job.id,
                "kind": job.kind.value,
                "source_id": job.source_id,
                "source_path": path,
                "attempts": job.attempts,
                "since": job.finished_at,
                "reason": job.quarantine_reason,
            },
        )
    return {"sources": sources, "jobs": list(seen.values())}


def quarantine(args: argparse.Namespace) -> int:
    report = read_catalog(collect_quarantine)
    if output.printed_json(args, report):
        return output.OK
    if not report["sources"] and not report["jobs"]:
        output.stdout().print("nothing is quarantined")
        return output.OK
    if report["sources"]:
        output.table(
            "quarantined sources (their content can't be archived)",
            ["id", "source", "reason"],
            [(s["id"], s["source_path"], s["reason"]) for s in report["sources"]],
        )
    if report["jobs"]:
        output.table(
            "quarantined jobs (`aic-admin retry --quarantined` tries them again)",
            ["job", "kind", "source", "path", "attempts", "reason"],
            [
                (j["job_id"], j["kind"], j["source_id"], j["source_path"], j["attempts"], j["reason"])
                for j in report["jobs"]
            ],
        )
    return output.OK
