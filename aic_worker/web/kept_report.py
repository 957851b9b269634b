"""Reports over the whole catalog, kept for the dashboard and recomputed in the background, so a
page or `/api/v1/stats` answers in milliseconds however large the catalog.

catalog/reports.stats_report sums the whole catalog in the database: 0.4 to 1.0 s for
100,000 sources on a busy 2-core machine (bench/web_scale.py), too slow for every page view;
the overview's files-per-hour chart counts every version of the last days. So the last report
is kept:

```
 age < FRESH (5 s)  ─► the kept report
 age < STALE (60 s) ─► the kept report, and a recomputation started in a thread (one at a time)
 none, or older     ─► recomputed now, then kept
```
A report served is thus never more than a minute old, and never older than FRESH after a
request that waited; `computed_at` says when it was made (the API sends it as the `Age` header).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

FRESH_SECONDS = 5.0
STALE_SECONDS = 60.0


class KeptReport:
    def __init__(
        self,
        reads: sessionmaker[Session],
        compute: Callable[[Session], dict[str, Any]],
        fresh: float = FRESH_SECONDS,
        stale: float = STALE_SECONDS,
    ) -> None:
        self.reads, self.compute = reads, compute
        self.fresh, self.stale = fresh, stale
        self._lock = threading.Lock()  # guards the fields below
        self._computing = threading.Lock()  # one recomputation at a time
        self._report: dict[str, Any] | None = None
        self._computed_at = 0.0  # time.monotonic()
        self._refreshing = False

    def get(self) -> tuple[dict[str, Any], float]:
        """The report and its age in seconds."""
        with self._lock:
            age = time.monotonic() - self._computed_at
            if self._report is not None and age < self.stale:
                if age >= self.fresh and not self._refreshing:
                    self._refreshing = True
                    threading.Thread(target=self._refresh, name="aic-report", daemon=True).start()
                return self._report, age
        return self._recompute(), 0.0

    def _refresh(self) -> None:
        try:
            self._recompute()
        finally:
            with self._lock:
                self._refreshing = False

    def _recompute(self) -> dict[str, Any]:
        with self._computing:
            with self._lock:  # another request may have just done it
                if self._report is not None and time.monotonic() - self._computed_at < self.fresh:
                    return self._report
            started = time.monotonic()
            with self.reads() as session:
                report = self.compute(session)
            with self._lock:
                self._report, self._computed_at = report, started
            return report
