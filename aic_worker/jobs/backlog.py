"""How much work waits, as gauges that the watcher and every worker serve alike.

`aic_jobs{state}` counts the catalog's jobs by state (the source of truth, DESIGN.md,
invariant 1); `aic_queue_depth` counts the messages waiting in the broker's queue (what
autoscalers look at); `aic_dependency_up{dependency}` says whether the last measurement
reached the catalog and the broker. Every process shows the same numbers, so a dashboard
takes their max(). Torch-free; the broker client is imported only when measuring.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from aic_worker.catalog.models import Job, JobState

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

# "mostrecent": in a worker only its main process measures, and the newest value is the truth.
JOBS = Gauge("aic_jobs", "Jobs in the catalog, by state", ["state"], multiprocess_mode="mostrecent")
QUEUE_DEPTH = Gauge("aic_queue_depth", "Messages waiting in the broker's queue",
                    multiprocess_mode="mostrecent")
DEPENDENCY_UP = Gauge("aic_dependency_up", "1 if the last measurement reached the catalog or the broker",
                      ["dependency"], multiprocess_mode="mostrecent")


@dataclass(frozen=True)
class Reach:
    """Whether the last measurement reached each dependency."""

    catalog: bool
    broker: bool


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def measure(sessions: sessionmaker[Session], celery_app: Celery | None = None) -> Reach:
    """Count jobs by state and the queue's messages into the gauges; never raises."""
    from aic_worker.jobs.queue import queue_depth

    try:
        with sessions() as session:
            counts = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    except Exception as error:  # the catalog away: the gauges keep their last values
        log.debug("catalog not measured: %s", _first_line(error))
        catalog = False
    else:
        for state in JobState:
            JOBS.labels(state.value).set(counts.get(state, 0))
        catalog = True
    try:
        QUEUE_DEPTH.set(queue_depth(celery_app))
    except Exception as error:
        log.debug("broker not measured: %s", _first_line(error))
        broker = False
    else:
        broker = True
    DEPENDENCY_UP.labels("catalog").set(int(catalog))
    DEPENDENCY_UP.labels("broker").set(int(broker))
    return Reach(catalog, broker)
