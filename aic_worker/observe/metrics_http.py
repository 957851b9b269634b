"""The HTTP endpoint of a watcher or worker: `/metrics` for Prometheus, `/healthz` for probes.

Settings (listed with the others in aic_worker/config.py): AIC_METRICS_PORT (unset or 0: no
endpoint), AIC_METRICS_ADDRESS (default 127.0.0.1: this machine only; set 0.0.0.0 where a
Prometheus or a probe on another host or container must reach it, as the compose and
Kubernetes deployments do) and AIC_METRICS_SECONDS (default 15: how often a worker measures
the catalog and the broker).

Nothing here asks who is calling, so what it serves must be harmless to anyone who can reach
it, and cheap: /healthz carries no paths, only states and counts; a scrape's figures are
made at most once every CACHE_SECONDS, however many scrapes come (the others get the same
bytes); at most MAX_THREADS requests are handled at a time (one more is answered 503 at
once), and a client that sends nothing is dropped after REQUEST_TIMEOUT seconds.

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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_MEASURE_SECONDS = 15.0
CACHE_SECONDS = 5.0
MAX_THREADS = 4
REQUEST_TIMEOUT = 10.0
BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nbusy\n"


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
    timeout = REQUEST_TIMEOUT  # a client that sends nothing must not hold a thread

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
                 health: Callable[[], Health], max_threads: int) -> None:
        self.collect = collect
        self.health = health
        self._slots = threading.BoundedSemaphore(max_threads)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per request while a slot is free; else 503 at once, from the accepting thread."""
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        """Silent (a client that hung up, say): see the module's docstring."""


class _Cached:
    """`make()`'s result, or its exception, kept for `seconds`; one caller makes it, the others wait."""

    def __init__(self, make: Callable[[], tuple[str, bytes]], seconds: float) -> None:
        self._make, self._seconds = make, seconds
        self._lock = threading.Lock()
        self._made_at: float | None = None
        self._result: tuple[str, bytes] | Exception = ("", b"")

    def __call__(self) -> tuple[str, bytes]:
        with self._lock:
            now = time.monotonic()
            if self._made_at is None or now - self._made_at >= self._seconds:
                try:
                    self._result = self._make()
                except Exception as error:  # kept too: a failing catalog is not asked at every scrape
                    self._result = error
                self._made_at = time.monotonic()
            result = self._result
        if isinstance(result, Exception):
            raise result
        return result


class MetricsServer:
    """Serves `registry` at /metrics (after `refresh()`, when given; both at most once every
    `cache_seconds`) and `health()` at /healthz, on at most `max_threads` threads."""

    def __init__(self, address: str, port: int, *, registry: CollectorRegistry, health: Callable[[], Health],
                 refresh: Callable[[], None] | None = None, cache_seconds: float = CACHE_SECONDS,
                 max_threads: int = MAX_THREADS) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        def collect() -> tuple[str, bytes]:
            if refresh is not None:
                refresh()
            return CONTENT_TYPE_LATEST, generate_latest(registry)

        # raises OSError when the port is taken
        self._server = _Server((address, port), _Cached(collect, cache_seconds), health, max_threads)
        self._thread = threading.Thread(target=self._server.serve_forever, name="aic-metrics", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
