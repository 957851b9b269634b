"""The Celery app and the broker side of jobs: publishing job ids, and what the queue holds.

Torch-free, so the watcher and `aic-admin` can enqueue without loading the codec: tasks are
sent by name (`send_task`), and only a worker imports `aic_worker.jobs.tasks` (the app's
`include`). A message carries a job id and nothing else; the catalog is the source of truth
(DESIGN.md, invariant 1), so a message lost here is re-sent by the reaper.

Settings, and why (see Celery's docs on each):
- `task_acks_late`: a message is acknowledged after its task ran, so a worker killed
  mid-job leaves it in Redis's unacked set to be delivered again.
- `task_reject_on_worker_lost`: a pool process that dies (kill -9, OOM) requeues its
  message instead of acknowledging it as failed.
- `worker_prefetch_multiplier = 1`: a busy worker holds no queued messages hostage.
- `visibility_timeout` twice the hard time limit: Redis re-delivers an unacknowledged
  message only after it, so it must outlast the longest job (a second delivery is harmless
  anyway: the lease refuses it).
- time limits from AIC_TASK_TIME_LIMIT: the soft one raises inside the task, which records
  the failure; the hard one kills the pool process (prefork pool only).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable

from celery import Celery
from kombu import Connection

from aic_worker.catalog.models import JobKind
from aic_worker.config import WorkerConfig

log = logging.getLogger(__name__)

QUEUE = "aic"
TASK_NAMES = {kind: f"aic.{kind.value}" for kind in JobKind}
# kombu's Redis transport keeps each priority level in its own list: "aic", "aic\x06\x163", ...
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


def make_app(config: WorkerConfig | None = None) -> Celery:
    """A Celery app for the broker and limits of `config` (default: the environment)."""
    config = config or WorkerConfig.from_env()
    app = Celery("aic", include=["aic_worker.jobs.tasks"])
    app.conf.update(
        broker_url=config.broker_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": config.visibility_timeout,
            "socket_connect_timeout": 5,
            "priority_steps": list(PRIORITY_STEPS),
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=config.task_time_limit,
        task_soft_time_limit=config.soft_time_limit,
        task_default_queue=QUEUE,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_send_task_events=True,  # Flower and `celery events` see every task (-E on by default)
    )
    return app


app = make_app()


def _connection(celery_app: Celery, *, write: bool = False) -> Connection:
    """A broker connection that tries once: kombu would otherwise retry for seconds, stalling a
    watcher enqueueing many jobs, or a reaper round on the worker's event loop, while Redis is down.
    """
    opener = celery_app.connection_for_write if write else celery_app.connection_for_read
    return opener(transport_options={"max_retries": 0})


def publish(job_id: int, kind: JobKind | str = JobKind.COMPRESS, *, celery_app: Celery | None = None) -> bool:
    """Wake a worker for job `job_id` (already committed); False if the broker is away.

    Never raises for a broker outage: the job is in the catalog, and the reaper re-sends
    the message of every claimable job once the broker is back.
    """
    celery_app = celery_app or app
    try:
        with _connection(celery_app, write=True) as connection:
            celery_app.send_task(
                TASK_NAMES[JobKind(kind)], args=[job_id], queue=QUEUE, connection=connection, retry=False
            )
    except Exception as error:  # any transport failure: the reaper covers for it
        log.warning("job %s not published (the reaper will resend it): %s", job_id, error)
        return False
    return True


def _queue_keys() -> list[str]:
    return [QUEUE if step == 0 else f"{QUEUE}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


def queue_depth(celery_app: Celery | None = None) -> int:
    """Messages waiting in the queue (not yet delivered to a worker)."""
    with _connection(celery_app or app) as connection:
        client = connection.default_channel.client
        return sum(int(client.llen(key)) for key in _queue_keys())


def _job_id_of(raw: bytes | str) -> int | None:
    """The job id a kombu/Redis message carries, or None for a message that isn't ours."""
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # unacked entries are [message, exchange, routing_key]
            message = message[0]
        if message.get("headers", {}).get("task") not in TASK_NAMES.values():
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def queued_job_ids(celery_app: Celery | None = None) -> set[int]:
    """Ids of jobs that have a message in the broker: waiting, or delivered but not yet acked."""
    with _connection(celery_app or app) as connection:
        channel = connection.default_channel
        client = channel.client
        raw: Iterable[bytes] = [m for key in _queue_keys() for m in client.lrange(key, 0, -1)]
        raw = [*raw, *client.hvals(channel.unacked_key)]
    return {job_id for job_id in map(_job_id_of, raw) if job_id is not None}


def answering_workers(celery_app: Celery | None = None, timeout: float = 1.0) -> list[str]:
    """Names of the workers that answer a ping within `timeout`; raises when the broker is away."""
    replies = (celery_app or app).control.ping(timeout=timeout)
    return sorted(name for reply in replies for name in reply)
