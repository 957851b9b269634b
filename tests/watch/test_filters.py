"""Which paths are candidates: decided from the name and, for symlinks, where they lead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aic_watch.config import FolderConfig, make_folder
from aic_watch.filters import refuse


@pytest.fixture
def folder(tmp_path: Path) -> FolderConfig:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return make_folder(inbox, ratio=8, archive=inbox / "archive", policy="move", done_dir=inbox / "done")


@pytest.mark.parametrize(
    "name",
    ["photo.png", "Photo.JPG", "a/b/scan.tiff", "x.jpeg", "x.tif", "x.bmp", "x.webp", "x.gif", "é.png"],
)
def test_images_are_candidates(folder: FolderConfig, name: str) -> None:
    assert refuse(folder, str(folder.path / name)) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("photo.png.part", "temporary"),
        ("photo.png.crdownload", "temporary"),
        ("photo.tmp", "temporary"),
        ("~$photo.png", "temporary"),
        (".photo.png", "hidden"),
        (".sync/photo.png", "hidden"),
        ("notes.txt", "extension 'txt'"),
        ("photo.aic", "extension 'aic'"),
        ("noextension", "extension ''"),
        ("archive/a/photo.png", "archive output"),
        ("done/photo.png", "archive output"),
    ],
)
def test_names_that_are_refused_quietly(folder: FolderConfig, name: str, reason: str) -> None:
    refusal = refuse(folder, str(folder.path / name))
    assert refusal is not None and reason in refusal.reason and not refusal.loud


def test_outside_and_subfolders_of_a_flat_folder(folder: FolderConfig, tmp_path: Path) -> None:
    assert refuse(folder, str(tmp_path / "elsewhere.png")) is not None
    assert refuse(folder, str(folder.path) + "-sibling/x.png") is not None
    flat = make_folder(folder.path, ratio=8, archive=tmp_path / "archive", recursive=False)
    assert refuse(flat, str(flat.path / "top.png")) is None
    assert refuse(flat, str(flat.path / "sub" / "deep.png")) is not None


def test_symlinks_are_refused_loudly_only_when_they_escape(folder: FolderConfig, tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(b"x")
    (folder.path / "real.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", folder.path / "escape.png")
    os.symlink(folder.path / "real.png", folder.path / "alias.png")
    os.symlink(tmp_path, folder.path / "up")
    escape = refuse(folder, str(folder.path / "escape.png"))
    assert escape is not None and escape.loud and "out of the watched tree" in escape.reason
    through_dir = refuse(folder, str(folder.path / "up" / "secret.png"))
    assert through_dir is not None and through_dir.loud
    alias = refuse(folder, str(folder.path / "alias.png"))
    assert alias is not None and not alias.loud
    assert refuse(folder, str(folder.path / "real.png")) is None


def test_a_name_that_is_not_utf8_is_refused_loudly(folder: FolderConfig) -> None:
    name = os.fsdecode(b"bad-\xff.png")
    refusal = refuse(folder, os.path.join(folder.path, name))
    assert refusal is not None and refusal.loud and "UTF-8" in refusal.reason
