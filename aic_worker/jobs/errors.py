"""How a job's work stops early: errors another attempt can't fix, and errors that pass by themselves.

PermanentJobError and LeaseLostError are the two ways the work itself stops, which the task
turns into catalog states. The others are a service away (the database, the broker): waited
out with backoff. A job that has done its work when the database goes away keeps it and
retries the commit, rather than throwing an encoded, verified file away.
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


class PermanentJobError(Exception):
    """Another attempt can't fix this (not an image, ratio unreachable): quarantine the job.

    `bad_input` marks content that can't be archived at all, so its source is quarantined
    too, with the same reason.
    """

    def __init__(self, reason: str, *, bad_input: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.bad_input = bad_input


class DamagedArchiveError(PermanentJobError):
    """An archive file is missing, altered or does not decode: verify marks its version damaged."""


class LeaseLostError(Exception):
    """The job's lease was reaped and maybe claimed by another worker: stop, change nothing."""


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
