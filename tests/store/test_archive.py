"""The archive layout and the temp-write / place sequence, on real files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from aic_worker.store import archive
from aic_worker.store.policy import Policy, apply_policy


def test_layout_mirrors_the_watched_folder_and_never_escapes_the_root(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    assert archive.archive_path(root, Path("/w"), Path("/w/2024/a.png")) == root / "2024" / "a.png.aic"
    assert archive.archive_path(root, Path("/w"), Path("/elsewhere/b.png")) == root / "b.png.aic"
    assert archive.archive_path(root, Path("/w"), Path("/w/../etc/passwd")) == root / "passwd.aic"
    names = archive.candidates(root / "a.png.aic")
    assert [next(names).name for _ in range(3)] == ["a.png.aic", "a.png.2.aic", "a.png.3.aic"]


def test_stage_then_place_never_overwrites_and_adopts_its_own_bytes(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "a.png.aic"
    data = b"aic file bytes"
    sha = hashlib.sha256(data).hexdigest()

    staged = archive.stage(final, data, job_id=7)
    assert staged.parent == final.parent and staged.name.startswith(".a.png.aic.job7.")
    assert staged.read_bytes() == data
    assert archive.place(staged, archive.candidates(final), sha) == (final, True)
    assert not staged.exists() and final.read_bytes() == data

    # Same bytes already there (a crash after placing, before the commit): adopted.
    again = archive.stage(final, data, job_id=7)
    assert archive.place(again, archive.candidates(final), sha) == (final, False)
    assert not again.exists()

    # Other bytes there, or a name the catalog records: the next free name.
    other = archive.stage(final, b"different", job_id=8)
    other_sha = hashlib.sha256(b"different").hexdigest()
    placed, created = archive.place(other, archive.candidates(final), other_sha)
    assert (placed.name, created) == ("a.png.2.aic", True) and final.read_bytes() == data
    third = archive.stage(final, b"third", job_id=9)
    placed, _ = archive.place(third, archive.candidates(final), hashlib.sha256(b"third").hexdigest(),
                              taken=lambda p: p.name == "a.png.aic")
    assert placed.name == "a.png.3.aic"

    with pytest.raises(FileExistsError):
        archive.place(archive.stage(final, b"fourth", job_id=9), [final], "0" * 64)


def test_stale_temps_of_a_job_are_removed_others_kept(tmp_path: Path) -> None:
    mine = tmp_path / ".a.png.aic.job3.deadbeef.tmp"
    theirs = tmp_path / ".b.png.aic.job4.deadbeef.tmp"
    for path in (mine, theirs):
        path.write_bytes(b"partial")
    assert archive.remove_stale_temps(tmp_path, 3) == [mine]
    assert not mine.exists() and theirs.exists()
    assert archive.remove_stale_temps(tmp_path / "missing", 3) == []


def test_policies_keep_move_delete(tmp_path: Path) -> None:
    folder, done = tmp_path / "in", tmp_path / "done"
    original = folder / "2024" / "a.png"
    original.parent.mkdir(parents=True)
    original.write_bytes(b"one")
    assert apply_policy(Policy.KEEP, original, folder, None) is None and original.exists()

    assert apply_policy(Policy.MOVE, original, folder, done) == done / "2024" / "a.png"
    assert not original.exists() and (done / "2024" / "a.png").read_bytes() == b"one"
    original.write_bytes(b"two")  # a second original of the same name never overwrites the first
    assert apply_policy(Policy.MOVE, original, folder, done) == done / "2024" / "a.2.png"
    assert (done / "2024" / "a.png").read_bytes() == b"one"

    original.write_bytes(b"three")
    assert apply_policy(Policy.DELETE, original, folder, None) is None and not original.exists()
    with pytest.raises(ValueError, match="done folder"):
        apply_policy(Policy.MOVE, original, folder, None)
