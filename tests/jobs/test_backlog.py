"""jobs/backlog.py: the metrics scrape counts jobs by state from index ranges, exactly, on both
backends, without reading every done job on each scrape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.orm import Session

from aic_worker.catalog.engine import session_factory
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import Job, JobKind, JobState
from aic_worker.catalog.sources import record_source
from aic_worker.jobs import backlog

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _jobs(session: Session, states: list[JobState], hour: int = 0) -> list[int]:
    source = record_source(
        session, path=f"/w/{hour}.png", folder="/w", sha256=f"{hour:064x}", size=1, mtime=T0, width=1,
        height=1, mode="RGB",
    )
    ids = []
    for n, state in enumerate(states):
        job, _ = enqueue_job(session, JobKind.VERIFY, source.id, parameters={"n": n})
        session.flush()
        finished = T0 + timedelta(hours=hour, minutes=n) if state is JobState.DONE else None
        session.execute(update(Job).where(Job.id == job.id).values(state=state, finished_at=finished))
        ids.append(job.id)
    session.commit()
    return ids


def _exact(session: Session) -> dict[JobState, int]:
    """Jobs by state as the scrape counted them before: one GROUP BY over every job."""
    counts = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    return {state: counts.get(state, 0) for state in JobState}


def _gauges() -> dict[JobState, float | None]:
    return {state: REGISTRY.get_sample_value("aic_jobs", {"state": state.value}) for state in JobState}


def test_a_scrape_counts_exactly_from_index_ranges(catalog: Engine, session: Session) -> None:
    done, pending = JobState.DONE, JobState.PENDING
    _jobs(session, [done, done, done, pending, pending, JobState.FAILED, JobState.QUARANTINED])
    sessions = session_factory(catalog)
    backlog._done_counts.clear()
    backlog.measure(sessions)  # the first scrape counts done jobs in full
    assert _gauges() == {state: float(n) for state, n in _exact(session).items()}

    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    _jobs(session, [done, done, JobState.RUNNING], hour=1)  # finished after the full count
    event.listen(catalog, "before_cursor_execute", seen)
    try:
        backlog.measure(sessions)
    finally:
        event.remove(catalog, "before_cursor_execute", seen)
    assert _gauges() == {state: float(n) for state, n in _exact(session).items()}
    counts = [s for s in statements if "FROM jobs" in s]
    assert counts and all("WHERE jobs.state" in s for s in counts), counts  # no pass over every job
    assert any("jobs.finished_at >" in s for s in counts)  # done: only those finished since


def test_the_full_count_puts_right_what_left_done(session: Session) -> None:
    ids = _jobs(session, [JobState.DONE] * 4)
    counts, done = backlog.count_jobs(session, None, now=0.0)
    assert counts[JobState.DONE] == 4 and done.total == 4
    session.execute(update(Job).where(Job.id == ids[0]).values(state=JobState.PENDING, finished_at=None))
    session.commit()
    counts, _ = backlog.count_jobs(session, done, now=1.0, recount=60)
    assert counts[JobState.DONE] == 4 and counts[JobState.PENDING] == 1  # drift, until the next full count
    counts, done = backlog.count_jobs(session, done, now=61.0, recount=60)
    assert counts == _exact(session) and done.total == 3
