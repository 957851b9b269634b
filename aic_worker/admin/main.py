"""Entry point of ``aic-admin``: collects the command groups and dispatches.

Each command module exposes ``register(subparsers)``, adding its commands with
``set_defaults(func=...)``; a command returns its exit code (0 all well, 1 some items
failed, 2 usage error). A command that can't go on raises CommandError; a catalog that
can't be reached or is at the wrong schema revision exits 1 with the reason.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError

from aic_worker.admin import (
    codec_commands,
    db_commands,
    listing_commands,
    maintenance_commands,
    recompress_command,
    restore_command,
    run_command,
    serve_command,
    worker_commands,
)
from aic_worker.admin.output import CommandError
from aic_worker.catalog.migrate import CatalogVersionError

COMMAND_MODULES = [
    run_command,
    worker_commands,
    listing_commands,
    recompress_command,
    restore_command,
    serve_command,
    maintenance_commands,
    codec_commands,
    db_commands,
]

EPILOG = """\
start here:
  aic-admin run ~/aic-inbox --ratio 32     watch a folder and archive what arrives
  aic-admin ls / stats / show ID           what the archive holds
  aic-admin restore ID -o DIR              images back, in their original layout

Exit status: 0 all well, 1 some items failed, 2 usage error. --json output: docs/cli.md.
Settings come from the environment (AIC_HOME, AIC_DATABASE_URL, AIC_BROKER_URL, ...).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aic-admin",
        description="Run and steer an AIC learned-codec image archive.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    except CommandError as error:
        print(f"aic-admin {args.command}: {error}", file=sys.stderr)
        return error.code
    except CatalogVersionError as error:
        print(f"aic-admin {args.command}: {error}", file=sys.stderr)
        return 1
    except OperationalError as error:
        reason = str(error.orig or error).strip().splitlines()[0]
        print(f"aic-admin {args.command}: cannot use the catalog: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `aic-admin ls | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
