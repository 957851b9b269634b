"""How much work waits, as gauges that the watcher and every worker serve alike.

`aic_jobs{state}` counts the catalog's jobs by state (the source of truth, DESIGN.md,
invariant 1); `aic_queue_depth` counts the messages waiting in the broker's queue (what
autoscalers look at); `aic_dependency_up{dependency}` says whether the last measurement
reached the catalog and the broker. Every process shows the same numbers, so a dashboard
takes their max(). Torch-free; the broker client is imported only when measuring.

Jobs by state are counted from the indexes that lead with state, so a scrape costs what the
unfinished jobs cost, not the catalog's size (before 0.4.0's fix of 2026-11-30, one GROUP BY
read every job: 57 to 98 ms at a million). Done jobs, nearly all of them, are counted in full
once every DONE_RECOUNT_SECONDS per process; in between, the jobs done since the newest
`finished_at` that count saw are added to it (a range on ix_jobs_finished). Between two full
counts the done figure can miss a job whose `finished_at` lies before that mark but which
committed after the count, or still count one taken out of done; the next full count puts
it right.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
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


DONE_RECOUNT_SECONDS = 300.0


@dataclass(frozen=True)
class DoneCount:
    """A full count of done jobs: `total` of them, the newest finished at `through`."""

    total: int
    through: datetime | None
    counted_at: float  # time.monotonic()


_done_counts: dict[str, DoneCount] = {}  # per catalog, in this process
_done_lock = threading.Lock()


def count_jobs(
    session: Session, done: DoneCount | None, now: float, recount: float = DONE_RECOUNT_SECONDS
) -> tuple[dict[JobState, int], DoneCount]:
    """Jobs per state. Unfinished ones from an index range on state; done ones from `done` (a
    full count no older than `recount` seconds) plus those finished after it, or, when that is
    older, all counted again in one pass."""
    is_done = Job.state == JobState.DONE
    by_state = select(Job.state, func.count()).group_by(Job.state)
    if done is None or now - done.counted_at >= recount:
        counts = dict(session.execute(by_state).all())
        through = session.scalar(select(func.max(Job.finished_at)).where(is_done))  # ix_jobs_finished's end
        done = DoneCount(counts.get(JobState.DONE, 0), through, now)
    else:
        unfinished = [state for state in JobState if state is not JobState.DONE]  # IN: a range each
        counts = dict(session.execute(by_state.where(Job.state.in_(unfinished))).all())
        since = [] if done.through is None else [Job.finished_at > done.through]
        counts[JobState.DONE] = done.total + session.scalar(select(func.count()).where(is_done, *since))
    return {state: counts.get(state, 0) for state in JobState}, done


def measure(sessions: sessionmaker[Session], celery_app: Celery | None = None) -> Reach:
    """Count jobs by state and the queue's messages into the gauges; never raises."""
    from aic_worker.jobs.queue import queue_depth

    try:
        with sessions() as session, _done_lock:
            catalog_key = str(session.get_bind().url)  # str() hides a password
            counts, _done_counts[catalog_key] = count_jobs(
                session, _done_counts.get(catalog_key), time.monotonic()
            )
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
