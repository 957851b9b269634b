"""A worker's metrics, health endpoint and job-tagged logs, hooked into Celery (`install(app)`).

```
 pool process (runs jobs)                         worker's main process
  task_prerun:  log lines tagged with the job       MonitoringStep, on the event-loop timer:
  pipeline:     encode seconds, bytes                 backlog.measure: catalog, broker -> gauges
  task_postrun: jobs_total, job_seconds               notes when the loop last turned
        |                                           HTTP thread (metrics_http.py):
        +--> PROMETHEUS_MULTIPROC_DIR/*.db ------->   /metrics: every process's files, summed
             (one mmap'd file per process)            /healthz: did the loop turn lately?
```
Why this shape:
- Prefork pool processes can't each serve the port, and they come and go (a killed one is
  replaced). prometheus_client's multiprocess mode has each process write its values to a
  file of its own in PROMETHEUS_MULTIPROC_DIR, and the main process adds them up when
  scraped, so a counter of a process that died keeps its count. The directory must be set
  before prometheus_client is imported: aic-worker creates it (or empties the one given);
  `celery -A aic_worker.jobs.tasks worker` needs it set by hand.
- The main process forks new pool processes at any moment, and a fork taken while another
  thread holds a lock leaves the child with that lock held forever. So the HTTP thread only
  reads those files and two numbers; whatever talks to the catalog or the broker runs on the
  event loop, as the reaper does.
- /healthz fails when the event loop has not completed a measurement for STALE_ROUNDS
  intervals: the worker is hung. With `--pool solo` a job runs on that loop, so the task
  time limit is added.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from celery import Celery, Task, bootsteps, signals, states
from celery.concurrency.solo import TaskPool as SoloPool
from celery.exceptions import ImproperlyConfigured
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.jobs import backlog
from aic_worker.jobs.queue import TASK_NAMES
from aic_worker.observe import metrics
from aic_worker.observe.log_format import enter_job, format_handlers
from aic_worker.observe.metrics_http import Health, MetricsServer, MetricsSettings

log = logging.getLogger(__name__)

STALE_ROUNDS = 4
KINDS = {name: kind for kind, name in TASK_NAMES.items()}
_started: dict[str, float] = {}  # task id -> monotonic start, in the pool process running it


def install(app: Celery) -> None:
    """Add the metrics endpoint to `app`'s workers and count and tag every AIC task."""
    app.steps["worker"].add(MonitoringStep)
    signals.task_prerun.connect(_task_started, weak=False)
    signals.task_postrun.connect(_task_finished, weak=False)
    signals.after_setup_logger.connect(_format_logs, weak=False)
    signals.after_setup_task_logger.connect(_format_logs, weak=False)


def _task_started(task_id: str, task: Task, args: Sequence[Any], **_: Any) -> None:
    if task.name in KINDS:
        enter_job(args[0] if args else None)
        _started[task_id] = time.monotonic()


def _task_finished(task_id: str, task: Task, retval: Any, state: str, **_: Any) -> None:
    kind = KINDS.get(task.name)
    if kind is None:
        return
    if state == states.SUCCESS and isinstance(retval, str):
        outcome = retval.replace(" ", "_")  # run_job's words: done, quarantined, lease lost, ...
    else:
        outcome = str(state).lower()  # retry, failure
    metrics.JOBS.labels(kind.value, outcome).inc()
    started = _started.pop(task_id, None)
    if started is not None:
        metrics.JOB_SECONDS.labels(kind.value).observe(time.monotonic() - started)
    enter_job(None)


def _format_logs(logger: logging.Logger, **_: Any) -> None:
    format_handlers(logger.handlers)


class MonitoringStep(bootsteps.StartStopStep):
    """Serves /metrics and /healthz when AIC_METRICS_PORT is set; measures the backlog on the loop."""

    requires = ("celery.worker.components:Timer", "celery.worker.components:Pool")

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.settings = MetricsSettings.from_env()
        self.engine: Engine | None = None
        self.server: MetricsServer | None = None
        self.entry: Any = None
        self.last_round: float | None = None
        self.reach: backlog.Reach | None = None
        self.stale_after = 0.0

    def start(self, parent: Any) -> None:
        if self.settings.port is None:
            return
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory or not os.path.isdir(directory):
            raise ImproperlyConfigured(
                "AIC_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR, an existing directory, set before the "
                "worker starts (aic-worker sets it up): the pool processes count there"
            )
        registry = CollectorRegistry()
        MultiProcessCollector(registry, directory)
        # As the reaper's: no idle connection for later forks to inherit, a short connect timeout.
        self.engine = create_catalog_engine(connect_timeout=3, poolclass=NullPool)
        sessions = session_factory(self.engine)
        interval = self.settings.measure_seconds
        solo = isinstance(parent.pool_cls, type) and issubclass(parent.pool_cls, SoloPool)
        job_on_loop = (parent.app.conf.task_time_limit or 0) if solo else 0
        self.stale_after = STALE_ROUNDS * interval + job_on_loop
        parent.timer.call_after(0.0, self._measure, (sessions, parent.app))
        self.entry = parent.timer.call_repeatedly(interval, self._measure, (sessions, parent.app))
        self.server = MetricsServer(self.settings.address, self.settings.port, registry=registry,
                                   health=self._health)
        self.server.start()
        log.info("metrics at http://%s:%d/metrics, health at /healthz", self.settings.address,
                 self.server.port)

    def _measure(self, sessions: sessionmaker[Session], app: Celery) -> None:
        self.reach = backlog.measure(sessions, app)
        self.last_round = time.monotonic()

    def _health(self) -> Health:
        """Runs on the HTTP thread: reads two attributes, nothing else (see the module's docstring)."""
        last_round, reach = self.last_round, self.reach
        if last_round is None or reach is None:
            return Health(False, {"reason": "starting: no measurement yet"})
        age = time.monotonic() - last_round
        detail: dict[str, object] = {"last_round_seconds_ago": round(age, 1), "catalog": reach.catalog,
                                     "broker": reach.broker}
        if age > self.stale_after:
            detail["reason"] = f"the worker's event loop has not turned for {age:.0f}s"
        return Health(age <= self.stale_after, detail)

    def stop(self, parent: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
        if self.server is not None:
            self.server.stop()
        if self.engine is not None:
            self.engine.dispose()
