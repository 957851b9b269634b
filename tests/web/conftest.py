"""A real catalog with real archives behind the web app: three photos archived by the tiny
model (one under a sub-folder) and one corrupt file whose compress job is quarantined.

`web` serves the app in this process through FastAPI's TestClient (httpx); the browser
tests start `aic-admin serve` as a process instead (test_browser.py). Publishing to the
broker is recorded, not sent: these tests have no worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from aic_worker.web.app import WebSettings, create_app
from tests.admin.conftest import ArchiveEnv, archive_env  # noqa: F401 - the fixture, shared
from tests.conftest import write_photos

TOKEN = "a-test-token-of-32-characters-00"


@dataclass
class Web:
    env: ArchiveEnv
    client: TestClient
    photos: list[Path]
    bad: Path
    ids: list[int]  # the photos' sources, then the bad file's
    published: list[int] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


def make_archive(env: ArchiveEnv) -> tuple[list[Path], Path, list[int]]:
    photos = write_photos(env.inbox, 2) + write_photos(env.inbox / "sub", 1, size=64, prefix="deep")
    bad = env.inbox / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return photos, bad, env.archived([*photos, bad])


def client_for(engine: Engine, token: str | None, home: Path, roots: Sequence[Path] = ()) -> TestClient:
    """The app on `engine`; `roots`: where add and restore over HTTP may reach (none: refused)."""
    env = {"AIC_HOME": str(home), "AIC_DEVICE": "cpu"}
    settings = WebSettings.from_env(env, bound=["testserver"], roots=roots)
    settings = dataclasses.replace(settings, token=token)
    return TestClient(create_app(engine, settings))


def roots_of(env: ArchiveEnv) -> list[Path]:
    """The roots the `web` fixture's server has: the watched folder, the archive, and `restored`."""
    return [env.inbox, env.archive, env.root / "restored"]


@pytest.fixture
def web(archive_env: ArchiveEnv) -> Iterator[Web]:  # noqa: F811
    photos, bad, ids = make_archive(archive_env)
    with client_for(archive_env.engine, TOKEN, archive_env.root / "home", roots_of(archive_env)) as client:
        found = Web(archive_env, client, photos, bad, ids)
        client.app.state.publish = lambda job_id, kind: found.published.append(job_id) or True
        yield found
