"""Helpers for the store's tests: a umask to run under, and a watch on fsync calls."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def permissive_umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The usual umask, and none at all: what AIC creates must be private under both."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


class Events:
    """fsync and unlink calls in order: ("fsync", inode, is_dir) and ("unlink", path)."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def fsynced_dirs(self) -> list[Path]:
        return [Path(e[3]) for e in self.seen if e[0] == "fsync" and e[2]]

    def index(self, event: tuple) -> int:
        return self.seen.index(event)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Events:
    """Record every os.fsync (the file's inode, whether a folder, its path) and os.unlink."""
    found = Events()
    real_fsync, real_unlink = os.fsync, os.unlink

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
        found.seen.append(("fsync", st.st_ino, os.path.isdir(path), path))
        real_fsync(fd)

    def unlink(path: os.PathLike[str] | str, *args: object, **kwargs: object) -> None:
        found.seen.append(("unlink", str(path)))
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "unlink", unlink)
    return found


def lands_first(
    monkeypatch: pytest.MonkeyPatch, target: Path, data: bytes, *where: tuple[object, str]
) -> None:
    """Another worker's file lands at `target` just before our first call of any of `where`'s
    functions that names `target`: the window between choosing a free name and taking it."""
    landed = []

    def wrap(real):
        def call(source, destination, *args, **kwargs):
            if Path(destination) == target and not landed:
                target.write_bytes(data)
                landed.append(target)
            return real(source, destination, *args, **kwargs)

        return call

    for owner, name in where:
        if hasattr(owner, name):
            monkeypatch.setattr(owner, name, wrap(getattr(owner, name)))
