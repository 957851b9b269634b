"""`aic-admin db upgrade` and `aic-admin db current`."""

from __future__ import annotations

import argparse

import pytest
from sqlalchemy import Engine

from aic_worker.admin import db_commands
from aic_worker.catalog.migrate import current_revision, head_revision, upgrade


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="aic-admin")
    db_commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_db_upgrade_brings_any_catalog_to_head(
    engine: Engine, catalog_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("db", "current", "--url", catalog_url) == 1
    assert "empty" in capsys.readouterr().out

    upgrade(engine, "0001")
    assert _run("db", "upgrade", "--url", catalog_url) == 0
    assert f"0001 -> {head_revision()}" in capsys.readouterr().out
    assert current_revision(engine) == head_revision()

    assert _run("db", "current", "--url", catalog_url) == 0
    assert "up to date" in capsys.readouterr().out


def test_db_upgrade_reads_aic_database_url(
    engine: Engine, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIC_DATABASE_URL", catalog_url)
    assert _run("db", "upgrade") == 0
    assert current_revision(engine) == head_revision()
