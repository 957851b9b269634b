"""Entry point of ``aic-admin``: collects the command groups and dispatches.

Each command module exposes ``register(subparsers)``, adding its commands with
``set_defaults(func=...)``; a command returns its exit code (0 all well,
1 some items failed, 2 usage error).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aic_worker.admin import codec_commands, db_commands, worker_commands

COMMAND_MODULES = [codec_commands, db_commands, worker_commands]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aic-admin",
        description="Run and steer an AIC learned-codec image archive.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
