"""A folder's command-line options, declared once for every command that takes them.

How its images are archived (`--ratio`, `--archive`, `--policy`, the done folder,
`--keep-versions`, `--if-bigger`, `--min-psnr`) is asked by `aic-watch FOLDER`, `aic-admin
run INBOX` and `aic-admin add PATH`; how it is watched (`--polling`, `--stability-window`)
by the first two; `aic-admin recompress` takes `--ratio`. A command chooses its defaults
(`aic-admin run` has AIC_HOME to put the archive and the done folder in) and the name of
the done folder's option (`--done-dir`, `--done`); names, types and meanings are the same
everywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aic_watch.config import DEFAULT_STABILITY_WINDOW
from aic_worker.jobs.parameters import IfBigger, keep_versions_of, min_psnr_of
from aic_worker.store.policy import Policy
from aic_worker.store.retention import DEFAULT_KEEP_VERSIONS


def add_ratio_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    default: float | None = None,
    required: bool = False,
    meaning: str = "target ratio: raw RGB bytes / .aic bytes",
) -> None:
    example = ", e.g. 32" if default is None else f" (default {default:g})"
    parser.add_argument("--ratio", type=float, default=default, required=required, metavar="R",
                        help=meaning + example)


def add_archive_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    ratio: float | None = None,
    ratio_required: bool = False,
    archive: str = "archive root the .aic files go to",
    done_option: str = "--done-dir",
    done: str = "where --policy move puts originals",
) -> None:
    """How a folder's images are archived: `--ratio` (default `ratio`), `--archive`, `--policy`,
    the done folder's `done_option`, `--keep-versions`, `--if-bigger` and `--min-psnr`; `archive`
    and `done` say where those folders are by default. The done folder is `args.done_dir` whatever its
    option is called."""
    add_ratio_option(parser, default=ratio, required=ratio_required)
    parser.add_argument("--archive", type=Path, metavar="DIR", help=archive)
    parser.add_argument("--policy", choices=[p.value for p in Policy], default=Policy.KEEP.value,
                        help=f"what happens to an original once archived (default {Policy.KEEP.value})")
    parser.add_argument(done_option, dest="done_dir", type=Path, metavar="DIR", help=done)
    parser.add_argument("--keep-versions", type=keep_versions_count, default=DEFAULT_KEEP_VERSIONS,
                        metavar="N", help="archive versions whose files stay once recompressed, the current "
                        f"one included (default {DEFAULT_KEEP_VERSIONS}: an older file is deleted once a new "
                        "version is committed)")
    parser.add_argument("--if-bigger", choices=[i.value for i in IfBigger],
                        default=IfBigger.PASSTHROUGH.value,
                        help="when a .aic would not be smaller than the original: store the original's "
                        "bytes as they are (passthrough, the default) or leave the file alone, its job "
                        "quarantined (leave)")
    parser.add_argument("--min-psnr", type=min_psnr_db, default=None, metavar="DB",
                        help="the PSNR an archive must reach before the delete or move policy removes the "
                        "original from the folder (default: the worker's AIC_MIN_PSNR; 0 turns the floor "
                        "off for this folder)")


def keep_versions_count(text: str) -> int:
    """`--keep-versions`' value: a whole number of at least 1."""
    try:
        return keep_versions_of(int(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}") from error


def min_psnr_db(text: str) -> float:
    """`--min-psnr`' value: 0 (no floor for the folder) or a positive number of dB."""
    try:
        return min_psnr_of(float(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"must be 0 (off) or a positive number of dB, got {text!r}"
        ) from error


def add_watch_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """How a folder is watched: `--polling` and `--stability-window`."""
    parser.add_argument("--polling", action="store_true", help="poll instead of inotify (network shares)")
    parser.add_argument("--stability-window", type=float, default=DEFAULT_STABILITY_WINDOW, metavar="SECONDS",
                        help=f"seconds a file must hold still before it is taken (default "
                        f"{DEFAULT_STABILITY_WINDOW:g})")
