"""The web application: one FastAPI app over a catalog's sessions, and the server that runs it.

`aic-admin serve` runs it in the foreground; `aic-admin run` beside its watcher, in a thread
(BackgroundServer). Settings come from the environment, like every AIC process's.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from celery import Celery
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from aic_worker.catalog.engine import data_dir, reading, session_factory
from aic_worker.catalog.models import utcnow
from aic_worker.catalog.reports import stats_report
from aic_worker.jobs import queue
from aic_worker.web import api, pages
from aic_worker.web.auth import HOSTS_VARIABLE, TOKEN_VARIABLE, HostCheck, allowed_hosts
from aic_worker.web.headers import SecurityHeaders
from aic_worker.web.kept_report import KeptReport
from aic_worker.web.preview import PreviewCache
from aic_worker.web.roots import ROOTS_VARIABLE, configured_roots

PREVIEW_CACHE_VARIABLE = "AIC_PREVIEW_CACHE_MB"
DEFAULT_PREVIEW_CACHE_MB = 256
MIN_TOKEN_LENGTH = 16  # a guessable token would open every write to whoever can connect
STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class WebSettings:
    token: str | None  # AIC_API_TOKEN; None: writes disabled
    preview_dir: Path  # AIC_HOME/previews
    preview_cache_bytes: int  # AIC_PREVIEW_CACHE_MB
    device: str  # where previews decode: AIC_DEVICE, else auto
    hosts: frozenset[str]  # names a request may call the server by (auth.HostCheck)
    roots: tuple[Path, ...] = ()  # where add and restore may reach (roots.py); none: they are refused

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, bound: Iterable[str] = (), roots: Iterable[Path] = ()
    ) -> WebSettings:
        """The environment's settings, for a server bound to the addresses `bound`, with AIC_API_ROOTS
        and `roots` (`serve --root`, or what `aic-admin run` archives) as its roots."""
        env = os.environ if env is None else env
        megabytes = float(env.get(PREVIEW_CACHE_VARIABLE) or DEFAULT_PREVIEW_CACHE_MB)
        if not megabytes >= 0:
            raise ValueError(f"{PREVIEW_CACHE_VARIABLE} must be a number of megabytes, got {megabytes}")
        token = env.get(TOKEN_VARIABLE) or None
        if token is not None and len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"{TOKEN_VARIABLE} must be at least {MIN_TOKEN_LENGTH} characters: `openssl rand -hex 32`"
            )
        return cls(
            token=token,
            preview_dir=data_dir(env).expanduser().resolve() / "previews",
            preview_cache_bytes=int(megabytes * 1024 * 1024),
            device=env.get("AIC_DEVICE") or "auto",
            hosts=allowed_hosts(env.get(HOSTS_VARIABLE), bound),
            roots=configured_roots(env.get(ROOTS_VARIABLE), roots),
        )


def create_app(engine: Engine, settings: WebSettings, celery_app: Celery | None = None) -> FastAPI:
    """The dashboard (/) and the JSON API (/api/v1, its schema at /api/v1/openapi.json) over
    the catalog at `engine`. Reads run in read-only transactions (engine.reading): on SQLite a
    page then never holds the write lock a worker's commit waits for. Jobs are published to
    `celery_app`'s broker (default: AIC_BROKER_URL's; `aic-admin run` passes its embedded one)."""
    app = FastAPI(
        title="AIC",
        summary="A learned-codec image archive: its catalog, previews and actions.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # FastAPI's Swagger and ReDoc pages load their scripts from a CDN
        redoc_url=None,
    )
    app.state.sessions = session_factory(engine)
    app.state.reads = session_factory(reading(engine))
    app.state.settings = settings
    app.state.celery_app = celery_app or queue.app
    app.state.publish = functools.partial(queue.publish, celery_app=app.state.celery_app)
    app.state.stats = KeptReport(app.state.reads, stats_report)
    app.state.chart = KeptReport(app.state.reads, lambda session: pages.archived_per_hour(session, utcnow()))
    app.state.previews = PreviewCache(
        settings.preview_dir, settings.preview_cache_bytes, app.state.reads, settings.device
    )
    app.add_middleware(HostCheck, hosts=settings.hosts)
    app.add_middleware(SecurityHeaders)  # outermost: on the 421s too
    app.add_api_route("/healthz", healthz, include_in_schema=False)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def healthz() -> dict[str, str]:
    """For the deploy files' probes: the server answers (no catalog query: a slow database
    must not get a healthy server restarted)."""
    return {"status": "ok"}


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class BackgroundServer:
    """uvicorn in a daemon thread, for `aic-admin run`: started, then stopped with the command."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="aic-web", daemon=True)
        self.url = url_of(host, port)

    def start(self, timeout: float = 10.0) -> str:
        """Start serving and return the URL; raises OSError when the port can't be bound."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the dashboard could not listen on {self.url}")
            time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
