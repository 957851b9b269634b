"""`aic-admin serve` as a command: torch-free until a preview is decoded, refusing a weak token,
and answering only to the names it is known by."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aic_worker.web.auth import allowed_hosts, host_name

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
