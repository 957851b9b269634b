"""`aic-admin serve` as a command: torch-free until a preview is decoded, refusing a weak token,
answering only to the names it is known by, and given its roots (`--root`, AIC_API_ROOTS, and
`aic-admin run`'s folders)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from celery import Celery

from aic_worker.admin import serve_command
from aic_worker.admin.main import build_parser
from aic_worker.catalog.engine import create_catalog_engine
from aic_worker.catalog.migrate import upgrade
from aic_worker.web.app import WebSettings
from aic_worker.web.auth import allowed_hosts, host_name
from tests.web.conftest import TOKEN

FRESH_IMPORT = """
import sys
from aic_worker.admin.main import main
from aic_worker.catalog.engine import create_catalog_engine
from aic_worker.web.app import WebSettings, create_app
from fastapi.testclient import TestClient

try:
    main(["serve", "--help"])
except SystemExit as exit_:
    assert exit_.code == 0
engine = create_catalog_engine()
from aic_worker.catalog.migrate import upgrade
upgrade(engine)
with TestClient(create_app(engine, WebSettings.from_env(bound=["testserver"]))) as client:
    for path in ("/", "/sources", "/quarantine", "/recompress", "/api/v1/stats", "/api/v1/sources"):
        assert client.get(path).status_code == 200, path
print("torch loaded:", "torch" in sys.modules)
"""


def test_serve_and_its_pages_run_without_torch(tmp_path: Path) -> None:
    env = {
        "AIC_HOME": str(tmp_path / "home"),
        "PATH": "/usr/bin:/bin",
        "AIC_BROKER_URL": "redis://127.0.0.1:1/0",
    }
    result = subprocess.run(
        [sys.executable, "-c", FRESH_IMPORT], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("torch loaded: False")


def test_a_short_token_is_refused_at_start(tmp_path: Path) -> None:
    env = {"AIC_HOME": str(tmp_path / "home"), "AIC_API_TOKEN": "CHANGE-ME", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "aic_worker.admin.main", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "at least 16 characters" in result.stderr


def test_the_names_a_request_may_use_are_loopback_the_bound_address_and_the_configured_ones() -> None:
    assert [host_name(h) for h in ("Example.org:8470", "[::1]:8470", "::1", "localhost")] == [
        "example.org",
        "::1",
        "::1",
        "localhost",
    ]
    assert allowed_hosts(None, ["0.0.0.0"]) == {"localhost", "127.0.0.1", "::1"}
    assert allowed_hosts(" aic.example.org, *", ["192.0.2.7"]) >= {"aic.example.org", "*", "192.0.2.7"}


def test_roots_come_from_the_environment_and_the_command_line(tmp_path: Path) -> None:
    inbox, restored, link = tmp_path / "inbox", tmp_path / "restored", tmp_path / "link"
    inbox.mkdir()
    link.symlink_to(inbox)
    env = {"AIC_HOME": str(tmp_path / "home"), "AIC_API_ROOTS": f"{link}{os.pathsep}{restored}"}
    settings = WebSettings.from_env(env, roots=[inbox, tmp_path / "done"])
    assert settings.roots == (inbox, restored, tmp_path / "done")  # resolved, each once
    args = build_parser().parse_args(["serve", "--root", str(inbox), "--root", str(restored)])
    assert args.root == [inbox, restored]


def test_run_serves_with_its_folders_as_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`aic-admin run`'s dashboard (serve_beside) may restore into the folders run gives it, not elsewhere."""
    monkeypatch.setenv("AIC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIC_API_TOKEN", TOKEN)
    monkeypatch.delenv("AIC_API_ROOTS", raising=False)
    monkeypatch.delenv("AIC_DATABASE_URL", raising=False)  # a catalog of its own, in AIC_HOME
    engine = create_catalog_engine()
    upgrade(engine)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        url = serve_command.serve_beside(stack, engine, Celery(), port, [tmp_path / "restored"])
        auth = {"Authorization": f"Bearer {TOKEN}"}

        def restore(output: Path) -> httpx.Response:
            return httpx.post(f"{url}api/v1/sources/1/restore", json={"output": str(output)}, headers=auth)

        assert restore(tmp_path / "restored").status_code == 404  # inside: no such source, then
        outside = restore(tmp_path / "elsewhere")
        assert outside.status_code == 403 and "outside" in outside.json()["detail"]
