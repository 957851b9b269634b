"""The worker tests' services live in tests/conftest.py, shared with the admin tests."""

from tests.conftest import (
    RATIO,
    RedisServer,
    Services,
    WorkerProcess,
    all_finished,
    free_port,
    jobs,
    photo,
    session_on,
    wait_for,
    write_photos,
)

__all__ = [
    "RATIO",
    "RedisServer",
    "Services",
    "WorkerProcess",
    "all_finished",
    "free_port",
    "jobs",
    "photo",
    "session_on",
    "wait_for",
    "write_photos",
]
