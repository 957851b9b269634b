"""The archive layout and the temp-write / place sequence, on real files."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from aic_worker.store import archive
from aic_worker.store.policy import Policy, apply_policy
from tests.store.conftest import Events, lands_first, mode


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


def test_a_job_removes_only_its_own_temps_whatever_the_names_hold(tmp_path: Path) -> None:
    """`.job3.` inside a file's name must not make job 3 delete job 33's temp (nor job 3's be missed)."""
    final = tmp_path / "x.job3.png.aic"
    theirs = archive.stage(final, b"job 33's", job_id=33)
    mine = archive.stage(tmp_path / "y.png.aic", b"job 3's", job_id=3)
    looks_like = archive.stage(tmp_path / "z.job3.12345678.tmp.aic", b"job 4's", job_id=4)
    assert archive.remove_stale_temps(tmp_path, 3) == [mine]
    assert theirs.read_bytes() == b"job 33's" and looks_like.exists() and not mine.exists()
    assert archive.temp_job(theirs.name) == 33 and archive.temp_job(looks_like.name) == 4


@pytest.mark.parametrize("group", [False, True], ids=["private", "group-readable"])
def test_archives_and_their_folders_are_private_whatever_the_umask(
    tmp_path: Path, permissive_umask: int, group: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if group:
        monkeypatch.setenv("AIC_GROUP_READABLE", "1")
    else:
        monkeypatch.delenv("AIC_GROUP_READABLE", raising=False)
    existing = tmp_path / "existing"
    existing.mkdir()
    existing.chmod(0o755)
    root = existing / "archive"
    final = root / "2024" / "05" / "a.png.aic"
    staged = archive.stage(final, b"bytes", job_id=1)
    assert mode(staged) == (0o640 if group else 0o600)
    placed, _ = archive.place(staged, [final], hashlib.sha256(b"bytes").hexdigest())
    assert mode(placed) == (0o640 if group else 0o600)
    for folder in (root, root / "2024", root / "2024" / "05"):
        assert mode(folder) == (0o750 if group else 0o700), folder
    assert mode(existing) == 0o755  # a folder that was there is left as it was


def test_folders_stage_creates_are_fsynced_in_their_parents(tmp_path: Path, events: Events) -> None:
    (tmp_path / "archive").mkdir()
    archive.stage(tmp_path / "archive" / "2024" / "05" / "a.png.aic", b"bytes", job_id=1)
    synced = events.fsynced_dirs()
    for parent in (tmp_path / "archive", tmp_path / "archive" / "2024", tmp_path / "archive" / "2024" / "05"):
        assert parent in synced, (parent, synced)


def _no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem that refuses hard links (some FUSE and network filesystems): link() gives EPERM."""

    def link(*_: object, **__: object) -> None:
        raise PermissionError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", link)


def test_without_hard_links_place_never_overwrites_a_name_taken_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "a.png.aic"
    staged = archive.stage(final, b"ours", job_id=1)
    _no_hard_links(monkeypatch)
    lands_first(monkeypatch, final, b"theirs", (os, "rename"), (archive, "_renameat2_noreplace"))
    placed, created = archive.place(staged, archive.candidates(final), hashlib.sha256(b"ours").hexdigest())
    assert final.read_bytes() == b"theirs"  # the other worker's file is intact
    assert (placed.name, created, placed.read_bytes()) == ("a.png.2.aic", True, b"ours")
    assert not staged.exists()


def test_without_hard_links_or_renameat2_a_reserved_name_is_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "a.png.aic"
    final.write_bytes(b"theirs")
    staged = archive.stage(final, b"ours", job_id=1)
    _no_hard_links(monkeypatch)

    def no_renameat2(source: Path, _target: Path) -> None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", str(source))

    monkeypatch.setattr(archive, "_renameat2_noreplace", no_renameat2, raising=False)
    placed, created = archive.place(staged, archive.candidates(final), hashlib.sha256(b"ours").hexdigest())
    assert final.read_bytes() == b"theirs"
    assert (placed.name, created, placed.read_bytes(), mode(placed)) == ("a.png.2.aic", True, b"ours", 0o600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png.2.aic", "a.png.aic"]


def test_recorded_bytes_are_given_only_while_they_are_what_the_catalog_recorded(tmp_path: Path) -> None:
    stored = tmp_path / "a.png.aic"
    stored.write_bytes(b"stored bytes")
    digest = hashlib.sha256(b"stored bytes").hexdigest()
    assert archive.recorded_bytes(stored, digest) == b"stored bytes"
    stored.write_bytes(b"stored bytez")
    with pytest.raises(archive.DamagedFileError, match="does not match its recorded sha256"):
        archive.recorded_bytes(stored, digest)
    stored.unlink()
    with pytest.raises(archive.DamagedFileError, match="is missing"):
        archive.recorded_bytes(stored, digest)
    stored.mkdir()
    with pytest.raises(archive.DamagedFileError, match="is a folder"):
        archive.recorded_bytes(stored, digest)
