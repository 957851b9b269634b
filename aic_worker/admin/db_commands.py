"""`aic-admin db …`: the catalog's schema (upgrade to this release's revision, show where it is)."""

from __future__ import annotations

import argparse

from aic_worker.catalog.engine import create_catalog_engine, database_url
from aic_worker.catalog.migrate import current_revision, head_revision, upgrade


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = subparsers.add_parser("db", help="manage the catalog database's schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)

    up = db_sub.add_parser("upgrade", help="migrate the catalog to this release's schema (back it up first)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    _add_url_option(up)
    up.set_defaults(func=_upgrade)

    current = db_sub.add_parser("current", help="show the catalog's schema revision and this release's")
    _add_url_option(current)
    current.set_defaults(func=_current)


def _add_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="catalog database URL (default: AIC_DATABASE_URL, else the SQLite file in AIC_HOME)"
    )


def _upgrade(args: argparse.Namespace) -> int:
    engine = create_catalog_engine(args.url or database_url())
    try:
        before = current_revision(engine)
        upgrade(engine, args.revision)
        after = current_revision(engine)
    finally:
        engine.dispose()
    print(f"catalog {engine.url.render_as_string(hide_password=True)}: {before or 'empty'} -> {after}")
    return 0


def _current(args: argparse.Namespace) -> int:
    engine = create_catalog_engine(args.url or database_url())
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    status = "up to date" if current == head else "run `aic-admin db upgrade`" if current else "empty"
    where = engine.url.render_as_string(hide_password=True)
    print(f"catalog {where}: {current or 'empty'} (head {head}; {status})")
    return 0 if current == head else 1
