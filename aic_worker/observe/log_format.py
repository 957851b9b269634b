"""Log lines as JSON objects (`AIC_LOG_FORMAT=json`), each tagged with the job it concerns.

Log shippers (journald to Loki, Kubernetes to Elasticsearch) index fields, not prose: with
`AIC_LOG_FORMAT=json` every line is one JSON object, and a line written about a job carries
`job_id`, so one query finds a job's whole story across the watcher and every worker. The
job comes from `extra={"job_id": ...}` on the call, else from the job context the worker
sets around each task (`enter_job`). Names with odd bytes stay valid JSON: non-ASCII is
escaped, lone surrogates included. Torch- and Celery-free: the watcher uses it too.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_current_job: contextvars.ContextVar[int | None] = contextvars.ContextVar("aic_job_id", default=None)


def log_format(env: Mapping[str, str] | None = None) -> str:
    """`text` (the default) or `json`, from AIC_LOG_FORMAT; anything else is an error, not a guess."""
    value = ((os.environ if env is None else env).get("AIC_LOG_FORMAT") or "text").lower()
    if value not in FORMATS:
        raise ValueError(f"AIC_LOG_FORMAT must be one of {', '.join(FORMATS)}, got {value!r}")
    return value


def enter_job(job_id: int | None) -> None:
    """Tag the lines this thread logs from now on with `job_id` (None: no job)."""
    _current_job.set(job_id)


@contextlib.contextmanager
def job_scope(job_id: int) -> Iterator[None]:
    """Tag lines with `job_id` inside the block, then go back to the task's own job
    (a batch runs several jobs in one task, and each line must name its own)."""
    token = _current_job.set(job_id)
    try:
        yield
    finally:
        _current_job.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, process, message, job_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": f"{record.processName}:{record.process}",
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            job_id = _current_job.get()
        if job_id is not None:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def format_handlers(handlers: Iterable[logging.Handler], env: Mapping[str, str] | None = None) -> None:
    """Give `handlers` the JSON formatter when AIC_LOG_FORMAT asks for it; leave them alone otherwise."""
    if log_format(env) == "json":
        for handler in handlers:
            handler.setFormatter(JsonFormatter())


def configure_logging(level: str, env: Mapping[str, str] | None = None) -> None:
    """Log to stderr at `level`, as text or JSON lines (AIC_LOG_FORMAT); Python's warnings too."""
    logging.basicConfig(level=level.upper(), format=TEXT_FORMAT, stream=sys.stderr)
    logging.captureWarnings(True)
    format_handlers(logging.getLogger().handlers, env)
