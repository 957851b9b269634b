"""How `aic-admin` commands print: rich tables for people, JSON for pipelines, errors on stderr.

Every listing command takes `--json` and then prints exactly one JSON document on stdout
(the schemas are in docs/cli.md); without it, rich tables. Progress bars and messages go
to stderr, so `--json` output stays clean. Exit codes: OK (0), SOME_FAILED (1), USAGE (2);
a command that can't go on raises CommandError, which main() reports.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

OK, SOME_FAILED, USAGE = 0, 1, 2
PIPE_WIDTH = 1000  # a table in a file or a pipe is as wide as its content
STREAM_CHUNK = 1000  # rows per rich table, and per block of a streamed one


def stdout() -> Console:
    """A console on the current sys.stdout (tests capture it)."""
    return _console(sys.stdout)


def stderr() -> Console:
    return _console(sys.stderr)


def _console(file: TextIO) -> Console:
    """Long paths are not folded into 80 columns when the output goes to a file or a pipe."""
    width = None if file.isatty() else PIPE_WIDTH
    return Console(file=file, soft_wrap=True, width=width)


class CommandError(Exception):
    """A command can't go on; main() prints the message and exits with `code`."""

    def __init__(self, message: str, code: int = SOME_FAILED) -> None:
        super().__init__(message)
        self.code = code


def print_json(document: Any) -> None:
    """One JSON document on stdout; datetimes as ISO 8601 strings."""
    print(json.dumps(document, indent=2, default=_jsonable))


def print_json_stream(items: Iterable[Any]) -> None:
    """A JSON array on stdout, written as `items` come: one compact object per line, so a
    listing of millions is never held in memory (nor indented by json's slow pure-Python path)."""
    _write_array(items)
    sys.stdout.write("\n")


def print_json_streaming(
    head: dict[str, Any], key: str, items: Iterable[Any], rest: Callable[[], dict[str, Any]]
) -> None:
    """One JSON object on stdout: `head`'s keys, then `key` with `items` as an array written
    as they come, then the keys of `rest()`, called once the items are written (totals)."""
    write = sys.stdout.write
    write(json.dumps(head, default=_jsonable)[:-1] + (", " if head else "") + json.dumps(key) + ": ")
    _write_array(items)
    tail = json.dumps(rest(), indent=2, default=_jsonable)
    write("}\n" if tail == "{}" else ",\n" + tail[2:] + "\n")


def _write_array(items: Iterable[Any]) -> None:
    """orjson encodes a row in about a seventh of json's time (datetimes as ISO 8601, as
    `_jsonable` writes them): `ls --all --json` of a million sources on PostgreSQL went from
    47,000–51,000 to 72,000–73,000 rows/s (bench/catalog_scale.py's read, 200,000 rows)."""
    write = sys.stdout.write
    separator = "[\n"
    for item in items:
        write(separator + orjson.dumps(item, default=_jsonable).decode())
        separator = ",\n"
    write("[]" if separator == "[\n" else "\n]")


def printed_json(args: Any, document: Any) -> bool:
    """With `--json` on the command line, print `document` as JSON and say so."""
    if args.json:
        print_json(document)
    return bool(args.json)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def error(command: str, message: str) -> None:
    print(f"aic-admin {command}: {message}", file=sys.stderr)


def usage_error(command: str, message: str) -> int:
    """Report a wrong command line the way argparse does (exit status 2)."""
    error(command, message)
    return USAGE


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A rich table on stdout; None cells print as `-`, numeric columns align right."""
    rows = [list(row) for row in rows]
    grid = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for i, name in enumerate(columns):
        grid.add_column(name, justify="right" if rows and _numeric(rows, i) else "left", overflow="fold")
    for row in rows:
        grid.add_row(*(cell_text(cell) for cell in row))
    stdout().print(grid)


def _numeric(rows: Sequence[Sequence[Any]], column: int) -> bool:
    """Whether a column holds numbers only (then it aligns right)."""
    return all(isinstance(row[column], int | float) or row[column] is None for row in rows)


def stream_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """table() for any number of rows, in constant memory: up to STREAM_CHUNK rows are one
    rich table; more are printed as they come, STREAM_CHUNK at a time, as plain aligned
    columns (rich lays out a row in about a millisecond: a million rows would take an hour)."""
    rows = iter(rows)
    chunk = list(itertools.islice(rows, STREAM_CHUNK))
    if len(chunk) < STREAM_CHUNK:
        table(title, columns, chunk)
        return
    write = sys.stdout.write
    if title:
        write(title + "\n")
    first = True
    while chunk:
        texts = [[cell_text(cell) for cell in row] for row in chunk]
        widths = [max(len(name), *(len(t[i]) for t in texts)) for i, name in enumerate(columns)]
        right = [_numeric(chunk, i) for i in range(len(columns))]
        if first:
            write("  ".join(name.ljust(w) for name, w in zip(columns, widths, strict=True)).rstrip() + "\n")
            first = False
        for t in texts:
            cells = (c.rjust(w) if r else c.ljust(w) for c, w, r in zip(t, widths, right, strict=True))
            write("  ".join(cells).rstrip() + "\n")
        chunk = list(itertools.islice(rows, STREAM_CHUNK))


def cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return str(value)


def human_bytes(n: int | float | None) -> str:
    """1536 -> '1.5 KiB'."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def progress(console: Console | None = None) -> Progress:
    """A progress bar with counts and ETA on stderr, the one progress style of aic-admin.

    Off when its console is not a terminal: a log file or a pipe gets no bar and no final
    frame of one; messages printed through `bar.console` still come through.
    """
    console = console or stderr()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )
