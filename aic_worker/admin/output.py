"""How `aic-admin` commands print: rich tables for people, JSON for pipelines, errors on stderr.

Every listing command takes `--json` and then prints exactly one JSON document on stdout
(the schemas are in docs/cli.md); without it, rich tables. Progress bars and messages go
to stderr, so `--json` output stays clean. Exit codes: OK (0), SOME_FAILED (1), USAGE (2);
a command that can't go on raises CommandError, which main() reports.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO

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
    write = sys.stdout.write
    separator = "[\n"
    for item in items:
        write(separator)
        write(json.dumps(item, default=_jsonable))
        separator = ",\n"
    write("[]\n" if separator == "[\n" else "\n]\n")


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


def table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, header: bool = True
) -> None:
    """A rich table on stdout; None cells print as `-`, numeric columns align right.

    header=False continues a table printed in chunks (a long listing, streamed)."""
    rows = [list(row) for row in rows]
    grid = Table(title=title, title_justify="left", show_edge=False, pad_edge=False, show_header=header)
    for i, name in enumerate(columns):
        numeric = bool(rows) and all(isinstance(row[i], int | float) or row[i] is None for row in rows)
        grid.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        grid.add_row(*(cell_text(cell) for cell in row))
    stdout().print(grid)


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
