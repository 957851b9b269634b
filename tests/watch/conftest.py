"""A real watcher on real folders and a real catalog; small distinct PNGs to drop into them.

The watcher publishes into a list here (`published`), so each test sees exactly what it
sent; tests/watch/test_broker.py sends through the real broker. Timing is by polling the
catalog, the source of truth, never by sleeping a fixed time and hoping.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import Engine, func, select

from aic_watch.config import FolderConfig, WatchConfig, make_config, make_folder
from aic_watch.watcher import Watcher
from aic_worker.catalog.codec_models import register_model
from aic_worker.catalog.engine import session_factory
from aic_worker.catalog.models import Job, Source, SourcePath

WINDOW = 0.4  # a short stability window; only the slow-writer test uses the default 2 s
OBSERVERS = ["inotify", "polling"]
POLL_INTERVAL = 0.25


def png(seed: int, size: int = 16) -> bytes:
    """A small PNG whose pixels (hence sha256) differ for every seed."""
    image = Image.new("RGB", (size, size))
    image.putdata(
        [((seed * 7 + i) % 256, (seed >> 8) % 256, (seed * 13 + i * 3) % 256) for i in range(size**2)]
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s (last: {result!r})")
        time.sleep(interval)


@dataclass
class Catalog:
    """Read-only views of the catalog for assertions."""

    engine: Engine

    def scalar(self, query: Any) -> Any:
        with session_factory(self.engine)() as session:
            return session.scalar(query)

    def all(self, query: Any) -> list[Any]:
        with session_factory(self.engine)() as session:
            return list(session.execute(query).all())

    def job_count(self) -> int:
        return self.scalar(select(func.count()).select_from(Job))

    def jobs(self) -> list[Job]:
        with session_factory(self.engine)() as session:
            return list(session.scalars(select(Job).order_by(Job.id)))

    def sources(self) -> list[Source]:
        with session_factory(self.engine)() as session:
            return list(session.scalars(select(Source).order_by(Source.id)))

    def paths(self) -> dict[str, tuple[int, bool]]:
        """path -> (source id, removed)."""
        rows = self.all(select(SourcePath.path, SourcePath.source_id, SourcePath.removed_at))
        return {path: (source_id, removed is not None) for path, source_id, removed in rows}


@pytest.fixture
def model_id(catalog: Engine) -> str:
    """A registered default codec model (the weights file need not exist for the watcher)."""
    with session_factory(catalog)() as session:
        model = register_model(session, sha256(b"weights"), "/models/test.safetensors", make_default=True)
        session.commit()
        return model.id


@pytest.fixture
def view(catalog: Engine, model_id: str) -> Catalog:
    return Catalog(catalog)


@dataclass
class Harness:
    """Folders for one test and watchers on them, stopped at the end."""

    root: Path
    engine: Engine
    published: list[int] = field(default_factory=list)
    watchers: list[Watcher] = field(default_factory=list)

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    def folder(self, observer: str = "inotify", **options: Any) -> FolderConfig:
        options.setdefault("poll_interval", POLL_INTERVAL)
        options.setdefault("archive", self.archive)
        return make_folder(self.inbox, ratio=16, observer=observer, **options)

    def config(self, *folders: FolderConfig, **options: Any) -> WatchConfig:
        options.setdefault("stability_window", WINDOW)
        return make_config(folders or [self.folder()], env={}, **options)

    def publish(self, job_id: int) -> bool:
        self.published.append(job_id)
        return True

    def start(self, config: WatchConfig | None = None, **options: Any) -> Watcher:
        options.setdefault("publish", self.publish)
        watcher = Watcher(config or self.config(), engine=self.engine, **options)
        watcher.start()
        self.watchers.append(watcher)
        return watcher

    def drop(self, name: str, data: bytes) -> Path:
        """Write a file into a hidden temp name and rename it in, as careful copiers do."""
        path = self.inbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.part")
        temporary.write_bytes(data)
        temporary.rename(path)
        return path


@pytest.fixture
def harness(tmp_path: Path, catalog: Engine, model_id: str) -> Iterator[Harness]:
    harness = Harness(tmp_path, catalog)
    harness.inbox.mkdir()
    yield harness
    for watcher in harness.watchers:
        watcher.stop()
