"""`aic-admin add` in this process against a real catalog and real files (its broker away:
the jobs stay in the catalog, where the reaper would find them)."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import select

from aic_worker.admin.main import build_parser
from aic_worker.admin.private_redis import free_port
from aic_worker.admin.run_command import inbox_folder
from aic_worker.catalog.models import Job, SourcePath
from aic_worker.jobs.parameters import CompressParameters, IfBigger
from tests.admin.conftest import ArchiveEnv
from tests.conftest import RATIO, session_on, write_photos


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIC_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_add_takes_none_of_aics_own_files_back_in(archive_env: ArchiveEnv, no_broker: None) -> None:
    """Until 0.4.0's review a folder holding its archive gave back its passthrough `.orig` files."""
    env = archive_env
    [photo] = write_photos(env.inbox, 1)
    archive = env.inbox / "archive"  # the archive inside the added folder, as a watched one may have it
    archive.mkdir()
    shutil.copy(photo, archive / "img00.png.orig")  # a passthrough version: the original's bytes
    shutil.copy(photo, archive / "other.png")  # anything under the archive root is its own
    (env.inbox / "elsewhere").mkdir()
    shutil.copy(photo, env.inbox / "elsewhere" / "moved.png.2.orig")  # a .orig moved out of it

    code, _ = env.admin("add", str(env.inbox), "--ratio", str(RATIO), "--archive", str(archive))
    assert code == 0
    with session_on(env.engine) as session:
        assert list(session.scalars(select(SourcePath.path))) == [str(photo)]
        assert len(session.scalars(select(Job)).all()) == 1


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_add_and_run_carry_a_folders_keep_versions_if_bigger_and_min_psnr(
    archive_env: ArchiveEnv, no_broker: None
) -> None:
    env = archive_env
    [photo] = write_photos(env.inbox, 1)
    code, _ = env.admin("add", str(photo), "--ratio", str(RATIO), "--archive", str(env.archive),
                        "--keep-versions", "3", "--if-bigger", "leave", "--min-psnr", "31")
    assert code == 0
    with session_on(env.engine) as session:
        [job] = session.scalars(select(Job)).all()
    settings = CompressParameters.from_json(job.parameters)
    assert (settings.keep_versions, settings.if_bigger, settings.min_psnr) == (3, IfBigger.LEAVE, 31.0)
    assert env.admin("add", str(photo), "--ratio", "8", "--keep-versions", "0")[0] == 2
    assert env.admin("add", str(photo), "--ratio", "8", "--min-psnr", "-5")[0] == 2

    args = build_parser().parse_args(["run", str(env.inbox), "--keep-versions", "2", "--if-bigger", "leave",
                                      "--min-psnr", "0"])
    folder = inbox_folder(args, env.root / "home")
    assert (folder.keep_versions, folder.if_bigger, folder.min_psnr) == (2, IfBigger.LEAVE, 0.0)
    plain = inbox_folder(build_parser().parse_args(["run", str(env.inbox)]), env.root / "home")
    assert (plain.keep_versions, plain.if_bigger, plain.min_psnr) == (1, IfBigger.PASSTHROUGH, None)
