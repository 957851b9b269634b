"""The stability window on a controlled clock, the decode check, and bounded holding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from aic_watch.config import FolderConfig, make_folder
from aic_watch.observer import Inbox, Sighting
from aic_watch.stability import NotAnImage, StabilityTracker, decode_check
from tests.watch.conftest import png


@pytest.fixture
def folder(tmp_path: Path) -> FolderConfig:
    return make_folder(tmp_path, ratio=8, archive=tmp_path.parent / "archive")


def test_a_file_is_due_only_after_holding_still_for_the_window(tmp_path: Path, folder: FolderConfig) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"12")
    tracker = StabilityTracker(window=2.0, capacity=10)
    tracker.add(str(path), folder, now=100.0)
    assert tracker.due(101.9, limit=10) == []
    with open(path, "ab") as file:
        file.write(b"3")  # a write during the window, seen by the stat at the due time
    assert tracker.due(102.0, limit=10) == []
    assert tracker.due(103.9, limit=10) == []
    (candidate,) = tracker.due(104.0, limit=10)
    assert candidate.path == str(path) and candidate.stat.st_size == 3
    assert len(tracker) == 0


def test_an_event_during_the_window_restarts_it(tmp_path: Path, folder: FolderConfig) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"12")
    tracker = StabilityTracker(window=2.0, capacity=10)
    tracker.add(str(path), folder, now=100.0)
    tracker.add(str(path), folder, now=101.5)
    assert tracker.due(102.0, limit=10) == []
    assert tracker.due(103.4, limit=10) == []
    assert len(tracker.due(103.5, limit=10)) == 1


def test_an_event_rereads_the_signature_so_the_window_runs_from_the_last_write(
    tmp_path: Path, folder: FolderConfig
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"")  # created empty, then written: two events
    tracker = StabilityTracker(window=2.0, capacity=10)
    tracker.add(str(path), folder, now=100.0)
    path.write_bytes(b"content")
    tracker.add(str(path), folder, now=100.5)
    assert tracker.due(102.4, limit=10) == []
    (candidate,) = tracker.due(102.5, limit=10)
    assert candidate.stat.st_size == len(b"content")


def test_gone_or_irregular_files_are_dropped(tmp_path: Path, folder: FolderConfig) -> None:
    tracker = StabilityTracker(window=1.0, capacity=10)
    path = tmp_path / "gone.png"
    path.write_bytes(b"1")
    tracker.add(str(path), folder, now=0.0)
    path.unlink()
    os.mkfifo(tmp_path / "fifo.png")
    tracker.add(str(tmp_path / "fifo.png"), folder, now=0.0)
    tracker.add(str(tmp_path / "never-existed.png"), folder, now=0.0)
    assert tracker.due(5.0, limit=10) == [] and len(tracker) == 0


def test_the_tracker_and_the_inbox_are_bounded(tmp_path: Path, folder: FolderConfig) -> None:
    tracker = StabilityTracker(window=1.0, capacity=3)
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(b"1")
        tracker.add(str(tmp_path / f"{i}.png"), folder, now=0.0)
    assert tracker.room == 0
    assert len(tracker.due(1.0, limit=2)) == 2 and tracker.room == 2
    inbox = Inbox(capacity=2)
    for _ in range(5):
        for i in range(4):
            inbox.put(Sighting(f"/x/{i}.png", folder))
    assert len(inbox) == 2
    assert inbox.take_overflowed() == [folder]  # the rest is left to a rescan
    assert [s.path for s in inbox.take(10)] == ["/x/0.png", "/x/1.png"]
    assert inbox.take_overflowed() == []


def test_decode_check_accepts_images_and_names_the_problem_otherwise(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(png(1, size=20))
    info = decode_check(str(good))
    assert (info.width, info.height, info.mode, info.format) == (20, 20, "RGB", "PNG")
    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), "red").save(jpeg, quality=90)
    assert (decode_check(str(jpeg)).width, decode_check(str(jpeg)).height) == (64, 48)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg.read_bytes()[:-200])
    unknown = (tmp_path / "text.png", "^not an image format Pillow can read$")
    for bad, words in [(truncated, "(?i)truncated"), unknown]:
        if not bad.exists():
            bad.write_text("hello")
        with pytest.raises(NotAnImage, match=words):
            decode_check(str(bad))


def test_decompression_bombs_are_not_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png(1, size=64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 4)
    with pytest.raises(NotAnImage, match="DecompressionBombError"):
        decode_check(str(path))


def test_an_unreadable_file_is_an_os_error_not_bad_content(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        decode_check(str(tmp_path / "missing.png"))
