"""The two ways a job's work stops early, which the task turns into catalog states."""

from __future__ import annotations


class PermanentJobError(Exception):
    """Another attempt can't fix this (not an image, ratio unreachable): quarantine the job.

    `bad_input` marks content that can't be archived at all, so its source is quarantined
    too, with the same reason.
    """

    def __init__(self, reason: str, *, bad_input: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.bad_input = bad_input


class LeaseLostError(Exception):
    """The job's lease was reaped and maybe claimed by another worker: stop, change nothing."""
