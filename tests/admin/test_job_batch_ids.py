"""admin/job_batch.py reads its jobs' states a chunk of ids at a time: one IN list of every
job id failed beyond SQLite's 32,766 bound parameters (a recompress of 40,000 sources)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event, update
from sqlalchemy.orm import Session

from aic_worker.admin.job_batch import _count_finished, _states
from aic_worker.catalog.engine import session_factory
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.models import Job, JobKind, JobState
from aic_worker.catalog.sources import record_source
from tests.catalog.conftest import MTIME, sha


def test_states_are_read_a_chunk_of_ids_at_a_time(catalog: Engine, session: Session) -> None:
    source = record_source(
        session, path="/w/a.png", folder="/w", sha256=sha("a"), size=1, mtime=MTIME, width=1, height=1,
        mode="RGB",
    )
    ids = [enqueue_job(session, JobKind.VERIFY, source.id, parameters={"n": n})[0].id for n in range(7)]
    session.flush()
    session.execute(update(Job).where(Job.id.in_(ids[:5])).values(state=JobState.DONE))
    session.commit()
    sizes: list[int] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM jobs" in statement:
            sizes.append(len(parameters))

    sessions = session_factory(catalog)
    event.listen(catalog, "before_cursor_execute", seen)
    try:
        states = _states(sessions, ids, chunk=3)
        finished = _count_finished(sessions, ids, chunk=3)
    finally:
        event.remove(catalog, "before_cursor_execute", seen)
    assert states == {i: JobState.DONE if n < 5 else JobState.PENDING for n, i in enumerate(ids)}
    assert finished == 5
    assert sizes == [3, 3, 1] * 2  # no statement binds more ids than a chunk
