"""The /metrics and /healthz endpoint itself, its settings, and the watcher's health rule."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from aic_watch.metrics import STALE_SECONDS, WatcherStatus, health
from aic_worker.jobs.main import _metrics_dir
from aic_worker.observe import metrics_http
from aic_worker.observe.metrics_http import Health, MetricsServer, MetricsSettings
from tests.observe.conftest import get


@pytest.fixture
def serve() -> Iterator[Callable[..., MetricsServer]]:
    servers: list[MetricsServer] = []

    def start(registry: CollectorRegistry, health: Callable[[], Health], **options: object) -> MetricsServer:
        server = MetricsServer("127.0.0.1", 0, registry=registry, health=health, **options)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_metrics_are_refreshed_once_per_cache_period_and_health_says_why_it_fails(
    serve: Callable[..., MetricsServer],
) -> None:
    registry = CollectorRegistry()
    scrapes = Counter("scrapes", "refreshes seen", registry=registry)
    state = {"ok": True}
    server = serve(registry, lambda: Health(state["ok"], {} if state["ok"] else {"reason": "hung"}),
                   refresh=scrapes.inc, cache_seconds=1.0)

    started = time.monotonic()
    for _ in range(3):  # however many scrapes come, the figures are made once per period
        status, body = get(server.port, "/metrics")
        assert status == 200 and "scrapes_total 1.0" in body.decode()
    assert time.monotonic() - started < 1.0
    time.sleep(1.1)
    status, body = get(server.port, "/metrics")
    assert status == 200 and "scrapes_total 2.0" in body.decode()
    assert get(server.port, "/healthz") == (200, json.dumps({"status": "ok"}).encode())
    state["ok"] = False
    status, body = get(server.port, "/healthz")
    assert status == 503 and json.loads(body) == {"status": "failing", "reason": "hung"}
    assert get(server.port, "/")[0] == 404


def test_a_failing_collection_is_a_500_not_a_dropped_connection(serve: Callable[..., MetricsServer]) -> None:
    def refresh() -> None:
        raise RuntimeError("catalog exploded")

    server = serve(CollectorRegistry(), lambda: Health(True), refresh=refresh)
    assert get(server.port, "/metrics") == (500, b"catalog exploded\n")
    assert get(server.port, "/metrics") == (500, b"catalog exploded\n")  # kept for the period too
    assert get(server.port, "/healthz")[0] == 200  # still serving


def test_settings_default_to_off_and_refuse_nonsense() -> None:
    assert MetricsSettings.from_env({}).port is None
    assert MetricsSettings.from_env({"AIC_METRICS_PORT": "0"}).port is None
    settings = MetricsSettings.from_env({"AIC_METRICS_PORT": "9310", "AIC_METRICS_ADDRESS": "127.0.0.1",
                                         "AIC_METRICS_SECONDS": "5"})
    assert settings == MetricsSettings(9310, "127.0.0.1", 5.0)
    assert MetricsSettings.from_env({"AIC_METRICS_PORT": "9310"}).address == "127.0.0.1"  # this host only
    assert MetricsSettings.from_env({"AIC_METRICS_PORT": "9310", "AIC_METRICS_ADDRESS": "0.0.0.0"}).address \
        == "0.0.0.0"
    for env in ({"AIC_METRICS_PORT": "http"}, {"AIC_METRICS_PORT": "70000"}, {"AIC_METRICS_SECONDS": "0"}):
        with pytest.raises(ValueError, match="AIC_METRICS"):
            MetricsSettings.from_env(env)


def watcher_status(**changes: object) -> WatcherStatus:
    status = {"running": True, "last_turn": time.monotonic(), "catalog_available": True, "paused": (),
              "unpublished": 0, "model_id": None}
    return WatcherStatus(**{**status, **changes})


def test_the_watcher_is_healthy_while_its_loop_turns_whatever_its_dependencies_do() -> None:
    ok = health(watcher_status(catalog_available=False, paused=("/mnt/share",), unpublished=7))
    assert ok.ok and ok.detail["paused_folders"] == 1 and ok.detail["unpublished_jobs"] == 7
    assert "/mnt/share" not in json.dumps(ok.detail)  # /healthz names no paths
    stopped = health(watcher_status(running=False))
    assert not stopped.ok and "not running" in str(stopped.detail["reason"])
    stale = health(watcher_status(last_turn=time.monotonic() - STALE_SECONDS - 1))
    assert not stale.ok and "has not turned" in str(stale.detail["reason"])


def test_aic_worker_counts_in_an_empty_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A given PROMETHEUS_MULTIPROC_DIR is emptied (old counts would add up); else one is made."""
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    assert _metrics_dir(MetricsSettings(None)) is None and not any(given.iterdir())
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert _metrics_dir(MetricsSettings(None)) is None and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    made = _metrics_dir(MetricsSettings(9310))
    try:
        assert made is not None and os.environ["PROMETHEUS_MULTIPROC_DIR"] == made and Path(made).is_dir()
    finally:
        shutil.rmtree(made or "", ignore_errors=True)


def test_concurrent_scrapes_share_one_refresh(serve: Callable[..., MetricsServer]) -> None:
    registry = CollectorRegistry()
    scrapes = Counter("scrapes", "refreshes seen", registry=registry)

    def slow_refresh() -> None:  # a catalog query and a Redis round trip, say
        time.sleep(0.3)
        scrapes.inc()

    server = serve(registry, lambda: Health(True), refresh=slow_refresh, cache_seconds=30.0, max_threads=4)
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: get(server.port, "/metrics"), range(4)))
    assert [status for status, _ in replies] == [200] * 4
    assert all(b"scrapes_total 1.0" in body for _, body in replies)


def test_requests_beyond_the_thread_bound_get_503_and_idle_clients_are_dropped(
    serve: Callable[..., MetricsServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_http._Handler, "timeout", 1.0)
    server = serve(CollectorRegistry(), lambda: Health(True), max_threads=2)
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]  # send nothing
    try:
        time.sleep(0.2)  # both accepted, each holding a thread
        assert get(server.port, "/healthz") == (503, b"busy\n")
        for client in idle:  # dropped after the request timeout, which frees their threads
            client.settimeout(5)
            assert client.recv(1024) == b""
    finally:
        for client in idle:
            client.close()
    assert get(server.port, "/healthz")[0] == 200
    assert threading.active_count() < 10
