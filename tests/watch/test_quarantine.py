"""Partial files and the quarantine, with the real watcher and catalog (issue #15).

A file written with a pause longer than the stability window is taken half-written and its
content quarantined; once the rest arrives the path holds the complete image, which is
queued, and the half-written content's quarantine entry is gone.
"""

from __future__ import annotations

import pytest

from aic_worker.catalog.models import SourceState
from tests.watch.conftest import OBSERVERS, WINDOW, Catalog, Harness, png, sha256, wait_until

pytestmark = pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)


@pytest.mark.parametrize("observer", OBSERVERS)
def test_a_path_quarantined_half_written_is_resolved_when_it_settles(
    harness: Harness, view: Catalog, observer: str
) -> None:
    harness.start(harness.config(harness.folder(observer)))
    data = png(21, size=32)
    path = harness.inbox / "slow upload.png"
    with open(path, "wb") as file:
        file.write(data[: len(data) // 2])
        file.flush()
        (partial,) = wait_until(view.sources, timeout=10 + WINDOW)  # the pause outlasted the window
        assert partial.state is SourceState.QUARANTINED and "decode" in partial.reason
        file.write(data[len(data) // 2 :])
    wait_until(view.job_count, timeout=10)
    (source,) = view.sources()
    assert (source.sha256, source.state, source.reason) == (sha256(data), SourceState.NEW, None)
    assert view.paths() == {str(path): (source.id, False)}
    assert view.job_count() == 1 and len(harness.published) == 1
