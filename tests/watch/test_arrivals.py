"""Files arriving in a watched folder, with the real observers (inotify and polling) and catalog."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest

from aic_worker.catalog.models import JobKind, JobState, SourceState
from tests.watch.conftest import (
    OBSERVERS,
    POLL_INTERVAL,
    WINDOW,
    Catalog,
    Harness,
    png,
    sha256,
    wait_until,
)

pytestmark = pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)


@pytest.mark.parametrize("observer", OBSERVERS)
def test_a_file_written_slowly_is_queued_once_after_its_last_write(
    harness: Harness, view: Catalog, observer: str
) -> None:
    harness.start(harness.config(harness.folder(observer), stability_window=2.0))
    data = png(1, size=64)
    path = harness.inbox / "slow.png"
    chunks = [data[i : i + len(data) // 5 + 1] for i in range(0, len(data), len(data) // 5 + 1)]
    with open(path, "wb") as file:
        for chunk in chunks:  # a gap of 0.8 s between writes, shorter than the 2 s window
            file.write(chunk)
            file.flush()
            time.sleep(0.8)
    last_write = os.stat(path).st_mtime
    wait_until(view.job_count, timeout=15)
    time.sleep(1.0)  # room for a second (wrong) job to appear
    (job,) = view.jobs()
    (source,) = view.sources()
    assert source.sha256 == sha256(data)
    assert job.created_at.timestamp() >= last_write + 2.0
    assert harness.published == [job.id]


@pytest.mark.parametrize("observer", OBSERVERS)
def test_five_hundred_files_dropped_at_once_make_exactly_five_hundred_jobs(
    harness: Harness, view: Catalog, observer: str
) -> None:
    harness.start(harness.config(harness.folder(observer)))
    staging = harness.root / "staging"
    staging.mkdir()
    for i in range(500):
        (staging / f"img{i:03}.png").write_bytes(png(i))
    for i in range(500):
        os.rename(staging / f"img{i:03}.png", harness.inbox / f"img{i:03}.png")
    wait_until(lambda: view.job_count() >= 500, timeout=60)
    time.sleep(1.0)
    jobs = view.jobs()
    assert len(jobs) == 500
    assert sorted(harness.published) == [job.id for job in jobs]
    assert {job.kind for job in jobs} == {JobKind.COMPRESS}
    assert {job.state for job in jobs} == {JobState.PENDING}
    assert len(view.paths()) == 500


@pytest.mark.parametrize("observer", OBSERVERS)
def test_files_that_arrive_while_the_watcher_is_stopped_are_queued_when_it_starts(
    harness: Harness, view: Catalog, observer: str
) -> None:
    config = harness.config(harness.folder(observer))
    first = harness.start(config)
    harness.drop("before.png", png(0))
    wait_until(lambda: view.job_count() == 1)
    first.stop()
    for i in range(1, 51):
        harness.drop(f"while-down-{i}.png", png(i))
    harness.start(config)
    wait_until(lambda: view.job_count() >= 51, timeout=30)
    time.sleep(0.5)
    assert view.job_count() == 51
    assert len(harness.published) == 51


def test_a_file_still_being_written_at_start_up_waits_for_its_last_write(
    harness: Harness, view: Catalog
) -> None:
    """The paperless-ngx lesson: the start-up scan applies the stability window too."""
    data = png(7, size=64)
    path = harness.inbox / "uploading.png"
    path.write_bytes(data[:100])
    done = threading.Event()

    def upload() -> None:
        with open(path, "ab") as file:
            for i in range(100, len(data), 100):
                time.sleep(0.1)  # gaps far shorter than the window
                file.write(data[i : i + 100])
                file.flush()
        done.set()

    writer = threading.Thread(target=upload)
    writer.start()
    # Polling far slower than the test: only the start-up scan can see this file.
    harness.start(harness.config(harness.folder("polling", poll_interval=60), stability_window=1.0))
    writer.join()
    finished = time.time()
    wait_until(view.job_count)
    (source,) = view.sources()
    assert source.sha256 == sha256(data)
    assert source.state is SourceState.NEW
    assert view.jobs()[0].created_at.timestamp() >= finished


@pytest.mark.parametrize("observer", OBSERVERS)
def test_a_renamed_file_is_recognised(harness: Harness, view: Catalog, observer: str) -> None:
    harness.start(harness.config(harness.folder(observer)))
    old = harness.drop("old.png", png(3))
    wait_until(view.job_count)
    new = harness.inbox / "sub" / "new.png"
    new.parent.mkdir()
    old.rename(new)
    wait_until(lambda: str(new) in view.paths())
    time.sleep(0.5)
    source_id = view.sources()[0].id
    assert view.job_count() == 1
    assert len(view.sources()) == 1
    assert view.paths() == {str(old): (source_id, True), str(new): (source_id, False)}
    assert len(harness.published) == 1


def test_a_file_renamed_while_the_watcher_was_down_is_recognised(harness: Harness, view: Catalog) -> None:
    config = harness.config()
    first = harness.start(config)
    old = harness.drop("old.png", png(3))
    wait_until(view.job_count)
    first.stop()
    new = old.rename(harness.inbox / "renamed.png")
    harness.start(config)
    wait_until(lambda: str(new) in view.paths())
    (source,) = view.sources()
    assert view.paths() == {str(old): (source.id, True), str(new): (source.id, False)}
    assert view.job_count() == 1


@pytest.mark.parametrize("observer", OBSERVERS)
def test_the_same_content_under_two_names_is_compressed_once_with_both_paths(
    harness: Harness, view: Catalog, observer: str
) -> None:
    harness.start(harness.config(harness.folder(observer)))
    a = harness.drop("a.png", png(4))
    b = harness.drop("copy of a.png", png(4))
    wait_until(lambda: len(view.paths()) == 2)
    time.sleep(0.5)
    (source,) = view.sources()
    assert view.job_count() == 1
    assert view.paths() == {str(a): (source.id, False), str(b): (source.id, False)}


@pytest.mark.parametrize("observer", OBSERVERS)
def test_symlinks_are_not_followed_out_of_the_watched_tree(
    harness: Harness, view: Catalog, observer: str, caplog: pytest.LogCaptureFixture
) -> None:
    outside = harness.root / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png(5))
    (outside / "nested").mkdir()
    (outside / "nested" / "deep.png").write_bytes(png(6))
    harness.start(harness.config(harness.folder(observer)))
    (harness.inbox / "link.png").symlink_to(outside / "secret.png")
    (harness.inbox / "linked-dir").symlink_to(outside / "nested", target_is_directory=True)
    harness.drop("real.png", png(8))
    wait_until(view.job_count)
    time.sleep(1.0)
    assert [s.sha256 for s in view.sources()] == [sha256(png(8))]
    assert list(view.paths()) == [str(harness.inbox / "real.png")]
    assert "link.png: a symlink leading out of the watched tree" in caplog.text


@pytest.mark.parametrize("observer", OBSERVERS)
def test_a_folder_that_vanishes_is_reported_and_resumes_when_it_returns(
    harness: Harness, view: Catalog, observer: str, caplog: pytest.LogCaptureFixture
) -> None:
    harness.start(harness.config(harness.folder(observer)))
    kept = harness.drop("kept.png", png(9))
    wait_until(view.job_count)
    paths_before = view.paths()
    away = harness.root / "unmounted"
    harness.inbox.rename(away)  # the share goes away, with its files
    wait_until(lambda: "is missing (unmounted or removed)" in caplog.text, timeout=5)
    (away / "added-while-away.png").write_bytes(png(10))
    time.sleep(1.5)
    assert view.paths() == paths_before  # nothing deleted or changed
    assert view.job_count() == 1
    away.rename(harness.inbox)  # back
    wait_until(lambda: "is back: resuming" in caplog.text, timeout=5)
    wait_until(lambda: view.job_count() == 2, timeout=10)
    harness.drop("after-return.png", png(11))
    wait_until(lambda: view.job_count() == 3, timeout=10)
    assert view.paths()[str(kept)] == paths_before[str(kept)]


def test_a_removed_folder_recreated_empty_resumes_watching(
    harness: Harness, view: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    harness.start()
    harness.drop("first.png", png(12))
    wait_until(view.job_count)
    shutil.rmtree(harness.inbox)
    wait_until(lambda: "is missing" in caplog.text, timeout=5)
    harness.inbox.mkdir()
    wait_until(lambda: "is back" in caplog.text, timeout=5)
    harness.drop("second.png", png(13))
    wait_until(lambda: view.job_count() == 2, timeout=10)
    assert not any(removed for _, removed in view.paths().values())


def test_a_file_that_does_not_decode_is_quarantined_and_the_watcher_carries_on(
    harness: Harness, view: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    harness.start()
    harness.drop("notes.png", b"this is not an image")
    harness.drop("truncated.png", png(14)[:60])
    harness.drop("good.png", png(15))
    wait_until(lambda: len(view.sources()) == 3)
    states = {s.sha256: (s.state, s.reason) for s in view.sources()}
    assert states[sha256(png(15))] == (SourceState.NEW, None)
    for bad in (b"this is not an image", png(14)[:60]):
        state, reason = states[sha256(bad)]
        assert state is SourceState.QUARANTINED
        assert reason.startswith("does not decode as an image")
    assert view.job_count() == 1
    assert "quarantined" in caplog.text and "notes.png" in caplog.text
    harness.drop("notes again.png", b"this is not an image")  # known bad content, new name
    wait_until(lambda: str(harness.inbox / "notes again.png") in view.paths())
    assert view.job_count() == 1 and len(view.sources()) == 3


def test_temporary_names_other_types_fifos_and_archive_outputs_are_never_taken(
    harness: Harness, view: Catalog
) -> None:
    archive, done = harness.inbox / "archive", harness.inbox / "done"
    harness.start(harness.config(harness.folder(archive=archive, policy="move", done_dir=done)))
    for name in ("a.png.part", "b.png.crdownload", "c.tmp", "~$d.png", ".e.png", "f.txt", "g.aic"):
        (harness.inbox / name).write_bytes(png(16))
    for output in (archive / "sub" / "x.png", done / "y.png", harness.inbox / ".sync" / "z.png"):
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(png(18))
    os.mkfifo(harness.inbox / "pipe.png")
    harness.drop("real.png", png(17))
    wait_until(view.job_count)
    time.sleep(1.0)
    assert list(view.paths()) == [str(harness.inbox / "real.png")]


@pytest.mark.parametrize("observer", OBSERVERS)
def test_a_folder_of_files_moved_in_is_queued_whole(harness: Harness, view: Catalog, observer: str) -> None:
    harness.start(harness.config(harness.folder(observer)))
    album = harness.root / "album"
    (album / "day 2").mkdir(parents=True)
    for i in range(20):
        (album / ("day 2" if i % 2 else "") / f"{i}.png").write_bytes(png(i))
    album.rename(harness.inbox / "album")
    wait_until(lambda: view.job_count() >= 20, timeout=20)
    # Nothing more comes later: no second job or message for a file, none for the folders.
    time.sleep(max(5 * WINDOW, 3 * POLL_INTERVAL))
    moved = harness.inbox / "album"
    expected = {str(moved / ("day 2" if i % 2 else "") / f"{i}.png") for i in range(20)}
    assert view.job_count() == 20
    assert sorted(harness.published) == sorted({j.id for j in view.jobs()})  # each job sent once
    assert {j.parameters["path"] for j in view.jobs()} == expected
    assert set(view.paths()) == expected


def test_more_arrivals_than_the_watcher_holds_are_all_queued(
    harness: Harness, view: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    """Memory is bounded (20 paths held here): the overflow is found by rescanning, not lost."""
    harness.start(capacity=20)
    staging = harness.root / "staging"
    staging.mkdir()
    for i in range(150):
        (staging / f"{i}.png").write_bytes(png(i))
    for i in range(150):
        os.rename(staging / f"{i}.png", harness.inbox / f"{i}.png")
    wait_until(lambda: view.job_count() >= 150, timeout=40)
    time.sleep(0.5)
    assert view.job_count() == 150 and len(harness.published) == 150
    assert "more events at once in" in caplog.text  # the inbox did overflow
