"""bench/catalog_scale.py's fill at toy scale, and the paged and streamed commands on what it fills."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine

from aic_worker.admin.main import main
from bench.catalog_scale import QUARANTINE_EVERY, daemon_queries, fill
from tests.catalog.test_folder_totals import full_pass, kept
from tests.conftest import session_on

SOURCES = 2 * QUARANTINE_EVERY + 500  # past a table's first chunk (1,000) and one batch of recompress (2,000)


@pytest.fixture
def filled(catalog: Engine, catalog_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    fill(catalog_url, SOURCES)
    monkeypatch.setenv("AIC_DATABASE_URL", catalog_url)
    return catalog


def admin(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    capsys.readouterr()
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_listings_page_and_stream(filled: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    out, err = admin(capsys, "ls")
    assert len(out.splitlines()) == 2 + 100 and "--after 100" in err  # header, rule, a page
    out, _ = admin(capsys, "ls", "--json", "--after", "100", "--limit", "5")
    assert [r["id"] for r in json.loads(out)] == list(range(101, 106))
    out, err = admin(capsys, "ls", "--all", "--json")
    assert [r["id"] for r in json.loads(out)] == list(range(1, SOURCES + 1)) and err == ""
    out, _ = admin(capsys, "ls", "--all")
    assert len(out.splitlines()) == 1 + SOURCES  # past 1,000 rows: plain columns, one header
    out, _ = admin(capsys, "ls", "--state", "quarantined", "--json")
    assert [r["id"] for r in json.loads(out)] == [QUARANTINE_EVERY, 2 * QUARANTINE_EVERY]
    out, _ = admin(capsys, "stats", "--json")
    stats = json.loads(out)
    assert stats["sources"] == SOURCES and stats["states"]["quarantined"] == 2 and len(stats["folders"]) == 10
    with session_on(filled) as session:  # the bulk fill's multi-row inserts kept the totals (0006)
        assert kept(session) == full_pass(session)
    out, _ = admin(capsys, "recompress", "--ratio", "64", "--all", "--dry-run", "--json")
    plan = json.loads(out)
    assert plan["selected"] == len(plan["items"]) == SOURCES - 2
    assert plan["to_encode"] == 0  # no original is on disk


def test_the_daemon_queries_run_on_a_filled_catalog(filled: Engine) -> None:
    timed = daemon_queries(filled, SOURCES)
    assert len(timed) == 6 and all(seconds > 0 for _, seconds in timed)
