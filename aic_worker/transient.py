"""Errors that pass by themselves (the database or the broker away), and waiting them out.

A job that has done its work when the database goes away keeps it and retries the commit
with backoff, rather than throwing an encoded, verified file away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
T = TypeVar("T")

BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0


def is_transient(error: BaseException) -> bool:
    """Whether `error` means a service is away (retry later) rather than that the work is wrong."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error,
        OperationalError | InterfaceError | DisconnectionError | BrokerError | RedisConnectionError
        | RedisTimeoutError,
    )


def backoff_delay(attempt: int, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait before retry number `attempt` (0-based): doubling, capped."""
    return min(first * 2**attempt, cap)


def in_transaction(sessions: sessionmaker[Session], work: Callable[[Session], T], *, patience: float) -> T:
    """Run `work` in one transaction, retrying it from the start while the database is away.

    Gives up (re-raising) after `patience` seconds; non-transient errors pass at once.
    """
    deadline = time.monotonic() + patience
    attempt = 0
    while True:
        try:
            with sessions() as session, session.begin():
                return work(session)
        except Exception as error:
            if not is_transient(error) or time.monotonic() >= deadline:
                raise
            delay = min(backoff_delay(attempt), max(deadline - time.monotonic(), 0.0))
            log.warning("database unavailable (%s); retrying in %.1fs", type(error).__name__, delay)
            time.sleep(delay)
            attempt += 1
