"""The watcher's Prometheus metrics and health check, served when AIC_METRICS_PORT is set.

| metric                      | type    | labels   | what                                              |
|-----------------------------|---------|----------|---------------------------------------------------|
| aic_watch_files_total       | counter | outcome  | stable files taken in: queued, known, quarantined |
| aic_watch_bytes_total       | counter |          | bytes of those files                              |
| aic_watch_unpublished_jobs  | gauge   |          | job ids waiting for the broker to come back       |
| aic_watch_folders_paused    | gauge   |          | watched folders missing (unmounted, removed)      |
| aic_watch_model             | gauge   | model_id | 1 for the model new jobs get                      |
| aic_jobs, aic_queue_depth, aic_dependency_up | gauges | | the backlog (aic_worker/jobs/backlog.py)   |

`known`: the content already has its job (a copy, a rename). The gauges are read when
scraped, at most once every few seconds (metrics_http.CACHE_SECONDS): the watcher never
forks, so its HTTP thread may talk to the catalog and the broker.
/healthz fails when the watcher's loop has stopped, or has not turned for STALE_SECONDS
(idle, it turns many times a second; hashing a batch of big files can hold it for a while,
a hung network share for ever).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge
from sqlalchemy import Engine

from aic_worker.catalog.engine import session_factory
from aic_worker.jobs import backlog
from aic_worker.observe.metrics_http import Health, MetricsServer

STALE_SECONDS = 300.0

FILES = Counter("aic_watch_files", "Stable files taken in, by what became of them", ["outcome"])
BYTES = Counter("aic_watch_bytes", "Bytes of the stable files taken in")
UNPUBLISHED = Gauge("aic_watch_unpublished_jobs", "Job ids waiting for the broker to come back")
PAUSED = Gauge("aic_watch_folders_paused", "Watched folders that are missing (unmounted or removed)")
MODEL = Gauge("aic_watch_model", "1 for the codec model new jobs get", ["model_id"])


@dataclass(frozen=True)
class WatcherStatus:
    """What the watcher reports for its metrics and /healthz (Watcher.status())."""

    running: bool
    last_turn: float  # time.monotonic() of the loop's last turn
    catalog_available: bool
    paused: tuple[str, ...]  # watched folders that are missing
    unpublished: int  # job ids waiting for the broker
    model_id: str | None  # the model new jobs get, once one was chosen


def health(status: WatcherStatus) -> Health:
    age = time.monotonic() - status.last_turn
    detail: dict[str, object] = {
        "loop_turned_seconds_ago": round(age, 1),
        "catalog": status.catalog_available,
        "paused_folders": len(status.paused),  # a count: paths are nobody's business at an open port
        "unpublished_jobs": status.unpublished,
    }
    if not status.running:
        detail["reason"] = "the watcher's loop is not running"
    elif age > STALE_SECONDS:
        detail["reason"] = f"the watcher's loop has not turned for {age:.0f}s"
    return Health("reason" not in detail, detail)


def serve(
    watcher_status: Callable[[], WatcherStatus], engine: Engine, address: str, port: int
) -> MetricsServer:
    """Start serving a watcher's metrics and health (`watcher_status`: Watcher.status), and the
    backlog measured on `engine`."""
    sessions = session_factory(engine)

    def refresh() -> None:
        status = watcher_status()
        UNPUBLISHED.set(status.unpublished)
        PAUSED.set(len(status.paused))
        if status.model_id is not None:
            MODEL.clear()
            MODEL.labels(status.model_id).set(1)
        backlog.measure(sessions)

    server = MetricsServer(address, port, registry=REGISTRY, health=lambda: health(watcher_status()),
                           refresh=refresh)
    server.start()
    return server
