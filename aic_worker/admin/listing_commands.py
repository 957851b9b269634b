"""`aic-admin ls | show | stats | quarantine`: reading the catalog. Torch-free; nothing is changed.

The JSON each prints with `--json` is specified in docs/cli.md (keys are only ever added) and
comes from catalog/reports.py, which the dashboard's JSON API shares.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from aic_worker.admin import output
from aic_worker.admin.catalog_access import read_catalog, read_sessions
from aic_worker.admin.selection import Selection, add_selection_arguments
from aic_worker.catalog.overview import STATES
from aic_worker.catalog.reports import (
    QUARANTINE_PAGE,
    iter_quarantined,
    iter_source_records,
    quarantine_cursor,
    quarantine_report,
    source_details,
    source_page,
    stats_report,
)

DEFAULT_LIMIT = 100


def positive(text: str) -> int:
    """argparse type: a whole number above 0."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number above 0")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "ls",
        help="list sources: state, ratio, archive file, PSNR",
        description="List the catalog's sources, one line (or JSON object) each.",
    )
    add_selection_arguments(p, with_all=False)
    p.add_argument("--state", choices=STATES, help="only sources in this state")
    p.add_argument("--json", action="store_true", help="a JSON array, one object per source")
    page = p.add_argument_group("how many (in source id order)")
    page.add_argument(
        "--limit", type=positive, default=DEFAULT_LIMIT, metavar="N", help=f"at most N ({DEFAULT_LIMIT})"
    )
    page.add_argument("--after", type=int, metavar="ID", help="those after source ID (the next page)")
    page.add_argument("--all", action="store_true", help="every one, streamed (JSON: one object per line)")
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
    page = p.add_argument_group("how many (by id: sources and jobs each)")
    page.add_argument(
        "--limit", type=positive, default=QUARANTINE_PAGE, metavar="N",
        help=f"at most N of each ({QUARANTINE_PAGE})",
    )
    page.add_argument(
        "--after", type=_cursor, metavar="SOURCE_ID:JOB_ID", help="those after these ids (the next page)"
    )
    page.add_argument("--all", action="store_true", help="every one, streamed")
    p.set_defaults(func=quarantine)


def _cursor(text: str) -> tuple[int, int]:
    """argparse type: a quarantine page's `next_after`."""
    try:
        return quarantine_cursor(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


LS_COLUMNS = ["id", "state", "source", "ratio", "achieved", "archive", "bytes", "PSNR"]
LS_KEYS = [
    "id", "state", "source_path", "target_ratio", "achieved_ratio", "archive_path", "archive_bytes", "psnr"
]


def ls(args: argparse.Namespace) -> int:
    """One page of sources (`--limit`, after `--after`), or with `--all` every one, streamed:
    memory holds one batch, whatever the size of the catalog."""
    selection = Selection.from_args(args)
    with read_sessions() as sessions, sessions() as session:
        if args.all:
            records = iter_source_records(session, conditions=selection.conditions(), state=args.state)
            if args.json:
                output.print_json_stream(records)
            else:
                output.stream_table(None, LS_COLUMNS, ([r[k] for k in LS_KEYS] for r in records))
            return output.OK
        page = source_page(
            session,
            conditions=selection.conditions(),
            state=args.state,
            limit=args.limit + 1,
            after_id=args.after,
        )
    more = len(page) > args.limit
    page = page[: args.limit]
    if args.json:
        output.print_json(page)
    else:
        output.table(None, LS_COLUMNS, [[r[k] for k in LS_KEYS] for r in page])
    if more:
        output.stderr().print(
            f"first {args.limit} shown; the next page: --after {page[-1]['id']}; every source: --all",
            highlight=False,
        )
    return output.OK


def show(args: argparse.Namespace) -> int:
    report = read_catalog(lambda session: source_details(session, args.id))
    if report is None:
        output.error("show", f"no source with id {args.id}")
        return output.SOME_FAILED
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
            "quality_reference",
            "created_at",
            "current",
        ],
        "jobs": ["id", "kind", "state", "target_ratio", "attempts", "finished_at", "error"],
    }
    for name, columns in shown.items():
        if report[name]:
            output.table(name, columns, [[entry[c] for c in columns] for entry in report[name]])
    return output.OK


def stats(args: argparse.Namespace) -> int:
    report = read_catalog(stats_report)
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
    names = {"ratio": "ratio", "psnr": "psnr", "psnr_vs_previous_version": "psnr vs a previous version"}
    dists = [(label, report[name]) for name, label in names.items() if report.get(name)]
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


SOURCE_COLUMNS = ["id", "source", "reason"]
SOURCE_KEYS = ["id", "source_path", "reason"]
JOB_COLUMNS = ["job", "kind", "source", "path", "attempts", "reason"]
JOB_KEYS = ["job_id", "kind", "source_id", "source_path", "attempts", "reason"]
SOURCES_TITLE = "quarantined sources (their content can't be archived)"
JOBS_TITLE = "quarantined jobs (`aic-admin retry --quarantined` tries them again)"


def _iso(value: datetime) -> str:
    """json.dumps' default: the one type a quarantine item holds that JSON lacks."""
    return value.isoformat()


def _json_arrays(arrays: dict[str, Iterable[Any]]) -> None:
    """One JSON object of arrays on stdout, each written as its items come, one per line."""
    write = sys.stdout.write
    write("{")
    for n, (key, items) in enumerate(arrays.items()):
        write(("" if n == 0 else ",") + f"\n{json.dumps(key)}: [")
        separator = "\n"
        for item in items:
            write(separator + json.dumps(item, default=_iso))
            separator = ",\n"
        write("]" if separator == "\n" else "\n]")
    write("\n}\n")


def quarantine(args: argparse.Namespace) -> int:
    """A page of quarantined sources and jobs (`--limit`, `--after`), or with `--all` every one,
    streamed: 100,000 quarantined jobs are never held in memory."""
    if args.all:
        with read_sessions() as sessions, sessions() as session:
            sources, jobs = iter_quarantined(session)
            if args.json:
                _json_arrays({"sources": sources, "jobs": jobs})
            else:
                rows = ([s[k] for k in SOURCE_KEYS] for s in sources)
                output.stream_table(SOURCES_TITLE, SOURCE_COLUMNS, rows)
                output.stream_table(JOBS_TITLE, JOB_COLUMNS, ([j[k] for k in JOB_KEYS] for j in jobs))
        return output.OK
    report = read_catalog(lambda session: quarantine_report(session, limit=args.limit, after=args.after))
    if output.printed_json(args, report):
        return output.OK
    if not report["sources"] and not report["jobs"]:
        output.stdout().print("nothing is quarantined" if args.after is None else "no more")
        return output.OK
    if report["sources"]:
        output.table(SOURCES_TITLE, SOURCE_COLUMNS, [[s[k] for k in SOURCE_KEYS] for s in report["sources"]])
    if report["jobs"]:
        output.table(JOBS_TITLE, JOB_COLUMNS, [[j[k] for k in JOB_KEYS] for j in report["jobs"]])
    if report["next_after"]:
        output.stderr().print(
            f"{report['source_count']} sources and {report['job_count']} jobs quarantined; "
            f"the next page: --after {report['next_after']}; every one: --all",
            highlight=False,
        )
    return output.OK
