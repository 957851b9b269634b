"""The move policy on real files: no overwrite under a race, durable across filesystems, private folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from aic_worker.store.policy import Policy, apply_policy
from tests.store.conftest import Events, lands_first, mode

SHM = Path("/dev/shm")


def test_a_move_never_overwrites_an_original_another_worker_moved_there_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, done = tmp_path / "in", tmp_path / "done"
    original = folder / "a.png"
    folder.mkdir()
    original.write_bytes(b"ours")
    # Between finding `done/a.png` free and taking it, another worker's a.png lands there.
    lands_first(monkeypatch, done / "a.png", b"theirs", (os, "link"), (os, "rename"))
    moved = apply_policy(Policy.MOVE, original, folder, done)
    assert (done / "a.png").read_bytes() == b"theirs"
    assert moved == done / "a.2.png" and moved.read_bytes() == b"ours" and not original.exists()


def test_done_folders_are_private_whatever_the_umask(tmp_path: Path, permissive_umask: int) -> None:
    folder, done = tmp_path / "in", tmp_path / "done"
    original = folder / "2024" / "a.png"
    original.parent.mkdir(parents=True)
    original.write_bytes(b"one")
    assert apply_policy(Policy.MOVE, original, folder, done) == done / "2024" / "a.png"
    assert mode(done) == mode(done / "2024") == 0o700


@pytest.mark.skipif(
    not SHM.is_dir() or not os.access(SHM, os.W_OK), reason="needs /dev/shm, a second filesystem"
)
def test_a_move_across_filesystems_is_durable_before_the_original_goes(
    tmp_path: Path, events: Events
) -> None:
    folder = tmp_path / "in"
    original = folder / "a.png"
    folder.mkdir()
    original.write_bytes(b"the only copy")
    os.utime(original, (1_000_000_000, 1_000_000_000))
    done = SHM / f"aic-test-done-{os.getpid()}-{tmp_path.name}"
    if os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same filesystem here")
    try:
        moved = apply_policy(Policy.MOVE, original, folder, done)
        assert moved == done / "a.png" and moved.read_bytes() == b"the only copy" and not original.exists()
        assert moved.stat().st_mtime == 1_000_000_000  # the original's timestamps kept
        gone = events.index(("unlink", str(original)))
        before = events.seen[:gone]
        inode = moved.stat().st_ino
        assert any(e[0] == "fsync" and e[1] == inode for e in before), "the copy was not fsynced first"
        assert done in [Path(e[3]) for e in before if e[0] == "fsync" and e[2]], "nor its folder"
        assert folder in events.fsynced_dirs()[-1:]  # and the removal itself is made durable
        assert not [p for p in done.iterdir() if p.name.endswith(".tmp")]
    finally:
        shutil.rmtree(done, ignore_errors=True)
