"""`aic-admin`'s catalog commands start without torch (issue #15: "a CLI that answers at once").

Loading torch costs seconds; only what encodes or decodes may pay that. Each check runs in a
fresh interpreter, since this test process has torch loaded already.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.admin.conftest import ArchiveEnv
from tests.conftest import RedisServer, photo

NO_TORCH = textwrap.dedent(
    """
    import sys
    from aic_worker.admin.main import build_parser, main

    build_parser()
    assert "torch" not in sys.modules, "building the parser imported torch"
    for argv in sys.argv[1:]:
        code = main(argv.split())
        assert code == 0, f"aic-admin {argv}: exit {code}"
        assert "torch" not in sys.modules, f"aic-admin {argv} imported torch"
    """
)


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_catalog_commands_do_not_import_torch(archive_env: ArchiveEnv, broker: RedisServer) -> None:
    photo(32).save(archive_env.inbox / "a.png")
    [source] = archive_env.archived([archive_env.inbox / "a.png"])
    commands = ["ls", "stats", f"show {source}", "status", "quarantine", "ls --json"]
    result = subprocess.run(  # archive_env pointed os.environ at the test's catalog
        [sys.executable, "-c", NO_TORCH, *commands],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "AIC_BROKER_URL": broker.url},
    )
    assert result.returncode == 0, result.stderr
    assert "a.png" in result.stdout


def test_help_does_not_import_torch() -> None:
    script = "import sys\nfrom aic_worker.admin.main import main\n" \
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n" \
             "assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "aic-admin" in result.stdout

