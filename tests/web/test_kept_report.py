"""The dashboard's kept reports: served while fresh, served and recomputed in the
background while stale, recomputed before answering once too old."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

from aic_worker.web.kept_report import KeptReport
from tests.conftest import wait_for


class Counting:
    """A stand-in for stats_report: each call returns the next number."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, _session: object) -> dict[str, Any]:
        self.calls += 1
        return {"call": self.calls}


def kept_report(compute: Counting, fresh: float, stale: float) -> KeptReport:
    return KeptReport(lambda: nullcontext(), compute, fresh=fresh, stale=stale)


def test_a_fresh_report_is_served_as_kept() -> None:
    compute = Counting()
    kept = kept_report(compute, fresh=60, stale=120)
    assert kept.get()[0] == {"call": 1} and kept.get()[0] == {"call": 1} and compute.calls == 1


def test_a_stale_report_is_served_while_a_new_one_is_made_in_the_background() -> None:
    compute = Counting()
    kept = kept_report(compute, fresh=0.05, stale=120)
    kept.get()
    time.sleep(0.1)
    report, age = kept.get()
    assert report == {"call": 1} and age >= 0.05  # answered at once with the old one
    wait_for(lambda: kept.get()[0] == {"call": 2}, 10, "the background recomputation", interval=0.01)


def test_a_report_too_old_is_made_again_before_answering() -> None:
    compute = Counting()
    kept = kept_report(compute, fresh=0.01, stale=0.02)
    kept.get()
    time.sleep(0.05)
    assert kept.get() == ({"call": 2}, 0.0)
