"""Reading the deploy files as their tools would, and checking what they name exists.

A deploy file goes stale silently: a renamed option, a typo'd variable, a command that was
never there. These helpers check each against the code: commands are parsed by the
project's own argument parsers, variables must be read somewhere in the code, watcher
configs go through the watcher's own config checks.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from aic_watch.config import WatchConfig, parse_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
PACKAGES = ("aic_worker", "aic_watch")


def parse_command(argv: Sequence[str]) -> Any:
    """`argv` as its console script parses it; fails when the command or one of its options doesn't exist."""
    name = Path(argv[0]).name
    assert name in SCRIPTS, f"{argv[0]}: not a command of this project ({', '.join(SCRIPTS)})"
    module = importlib.import_module(SCRIPTS[name].partition(":")[0])
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return module.build_parser().parse_args(list(argv[1:]))
    except SystemExit:
        pytest.fail(f"{' '.join(argv)}: {errors.getvalue().strip()}", pytrace=False)


def variables_read_by_the_code() -> set[str]:
    """Every AIC_* name that appears as a string in the packages' sources."""
    names: set[str] = set()
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"""["'](AIC_[A-Z0-9_]+)["']""", source.read_text()))
    return names


def check_variables(names: Iterable[str]) -> None:
    unknown = {name for name in names if name.startswith("AIC_")} - variables_read_by_the_code()
    assert not unknown, f"variables no code reads: {sorted(unknown)}"


def check_watch_config(text: str) -> WatchConfig:
    """The watcher's own checks (paths need not exist: they are made absolute, not opened)."""
    return parse_config(tomllib.loads(text), env={})
