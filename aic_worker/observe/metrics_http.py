"""The HTTP endpoint of a watcher or worker: `/metrics` for Prometheus, `/healthz` for probes.

Settings (listed with the others in aic_worker/config.py): AIC_METRICS_PORT (unset or 0: no
endpoint), AIC_METRICS_ADDRESS (default 0.0.0.0) and AIC_METRICS_SECONDS (default 15: how
often a worker measures the catalog and the broker).

The server runs on a daemon thread of its own. `/healthz` answers 200 with a JSON body when
the process does its work, 503 when it does not (the body says why); the state of the
catalog and the broker is in the body too, but does not fail it: restarting a worker
because the database is away would not bring the database back.
The handler never logs: in a worker's main process this thread must take no lock that a
pool process forked meanwhile could inherit held (see monitoring.py). This module
imports prometheus_client only when a server is made, so aic-worker can read the settings
before it sets up the multiprocess directory that prometheus_client looks for on import.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

DEFAULT_ADDRESS = "0.0.0.0"
DEFAULT_MEASURE_SECONDS = 15.0


@dataclass(frozen=True)
class MetricsSettings:
    port: int | None  # None: no endpoint
    address: str = DEFAULT_ADDRESS
    measure_seconds: float = DEFAULT_MEASURE_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MetricsSettings:
        env = os.environ if env is None else env
        raw_port = env.get("AIC_METRICS_PORT") or "0"
        raw_seconds = env.get("AIC_METRICS_SECONDS") or str(DEFAULT_MEASURE_SECONDS)
        try:
            port, seconds = int(raw_port), float(raw_seconds)
        except ValueError:
            raise ValueError(f"AIC_METRICS_PORT {raw_port!r} or AIC_METRICS_SECONDS {raw_seconds!r} "
                             "is not a number") from None
        if not 0 <= port < 65536 or not seconds > 0:
            raise ValueError(f"AIC_METRICS_PORT must be 0..65535 and AIC_METRICS_SECONDS positive, "
                             f"got {raw_port!r} and {raw_seconds!r}")
        return cls(port or None, env.get("AIC_METRICS_ADDRESS") or DEFAULT_ADDRESS, seconds)


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: Mapping[str, object] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            try:
                content_type, body = self.server.collect()
            except Exception as error:  # a scrape that fails must say so, not drop the connection
                self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", f"{error}\n".encode())
                return
            self._reply(HTTPStatus.OK, content_type, body)
        elif path == "/healthz":
            health = self.server.health()
            body = json.dumps({"status": "ok" if health.ok else "failing", **health.detail}, default=str)
            status = HTTPStatus.OK if health.ok else HTTPStatus.SERVICE_UNAVAILABLE
            self._reply(status, "application/json", body.encode())
        else:
            self._reply(HTTPStatus.NOT_FOUND, "text/plain", b"/metrics or /healthz\n")

    def _reply(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: see the module's docstring."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], collect: Callable[[], tuple[str, bytes]],
                 health: Callable[[], Health]) -> None:
        self.collect = collect
        self.health = health
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Silent (a client that hung up, say): see the module's docstring."""


class MetricsServer:
    """Serves `registry` at /metrics (after `refresh()`, when given) and `health()` at /healthz."""

    def __init__(self, address: str, port: int, *, registry: CollectorRegistry, health: Callable[[], Health],
                 refresh: Callable[[], None] | None = None) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        def collect() -> tuple[str, bytes]:
            if refresh is not None:
                refresh()
            return CONTENT_TYPE_LATEST, generate_latest(registry)

        self._server = _Server((address, port), collect, health)  # raises OSError when the port is taken
        self._thread = threading.Thread(target=self._server.serve_forever, name="aic-metrics", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
