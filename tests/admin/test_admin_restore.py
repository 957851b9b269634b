"""`aic-admin restore`: images back from the catalog, in their layout, with EXIF, ICC and mtime;
every mode in a format that holds it; passthrough versions bit for bit; an older intact
version when the current file is missing or damaged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image, ImageCms
from sqlalchemy import select

from aic_worker.admin.job_batch import run_batch
from aic_worker.admin.main import main
from aic_worker.admin.worker_commands import record_file
from aic_worker.catalog.engine import session_factory
from aic_worker.catalog.models import ArchiveKind, ArchiveVersion, JobKind
from aic_worker.jobs.parameters import CompressParameters
from tests.admin.conftest import ArchiveEnv
from tests.admin.test_codec_commands import assert_restored, write_mode_files
from tests.conftest import photo

MTIME = 1_600_000_000  # 2020-09-13


def test_restore_by_id_path_archive_and_folder(archive_env: ArchiveEnv) -> None:
    env = archive_env
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "AIC test camera"  # Make
    tagged = env.inbox / "2024" / "tagged.png"
    tagged.parent.mkdir()
    photo(96, seed=1).save(tagged, exif=exif.tobytes(), icc_profile=icc)
    os.utime(tagged, (MTIME, MTIME))
    jpeg = env.inbox / "b.jpg"
    photo(64, seed=2).save(jpeg, quality=95)
    tagged_id, jpeg_id = env.archived([tagged, jpeg])

    out = env.root / "out"
    code, text = env.admin("restore", str(tagged_id), "-o", str(out))
    assert code == 0 and "restored 1 image(s)" in text
    restored = out / "2024" / "tagged.png"
    with Image.open(restored) as image:
        assert image.format == "PNG" and image.size == (96, 96) and image.mode == "RGB"
        assert image.info["icc_profile"] == icc
        assert image.getexif()[0x010F] == "AIC test camera"
    assert restored.stat().st_mtime == MTIME

    whole = env.root / "whole"
    code, text = env.admin("restore", str(env.inbox), "-o", str(whole), "--format", "tiff")
    assert code == 0 and "restored 2 image(s)" in text
    assert sorted(p.relative_to(whole).as_posix() for p in whole.rglob("*.tif")) == [
        "2024/tagged.tif",
        "b.tif",
    ]

    by_name = env.root / "by-name"
    aic = next(env.archive.rglob("b.jpg.aic"))
    code, _ = env.admin("restore", str(jpeg), str(aic), "-o", str(by_name))
    assert code == 0 and [p.name for p in by_name.iterdir()] == ["b.png"]  # both name the same source
    assert Image.open(by_name / "b.png").size == (64, 64)

    code, _ = env.admin("restore", str(tagged_id), "-o", str(out))
    assert code == 0  # the same image already there counts as restored
    (by_name / "b.png").write_bytes(b"something else")
    code, _ = env.admin("restore", str(jpeg_id), "9999", str(env.root / "nowhere"), "-o", str(by_name))
    assert code == 1 and (by_name / "b.png").read_bytes() == b"something else"  # never overwritten
    assert not any(Path(by_name).glob(".*.tmp"))


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)  # the catalog's part is the same
def test_every_mode_is_restored_to_a_format_that_holds_it(archive_env: ArchiveEnv) -> None:
    env = archive_env
    sources = write_mode_files(env.inbox / "modes", ["CMYK", "I", "I;16", "P", "1"])
    env.archived(list(sources.values()), ratio=8)
    out = env.root / "out"
    code, text = env.admin("restore", str(env.inbox), "-o", str(out))
    assert code == 0 and f"restored {len(sources)} image(s)" in text, env.capsys.readouterr()
    for mode, src in sources.items():
        [restored] = (out / "modes").glob(src.stem + ".*")
        assert_restored(restored, mode)


def _versions(env: ArchiveEnv, source_id: int) -> list[ArchiveVersion]:
    """The source's archive versions, oldest first."""
    with session_factory(env.engine)() as session:
        return list(session.scalars(
            select(ArchiveVersion).where(ArchiveVersion.source_id == source_id).order_by(ArchiveVersion.id)
        ))


def test_a_missing_or_damaged_current_file_falls_back_to_the_newest_intact_version(
    archive_env: ArchiveEnv,
) -> None:
    env = archive_env
    original = env.inbox / "a.png"
    photo(64, seed=3).save(original)
    job, _ = record_file(session_factory(env.engine)(),
                         CompressParameters(original, env.inbox, env.archive, keep_versions=3), 8)
    run_batch(session_factory(env.engine), [job.id], JobKind.COMPRESS, local=True, device="cpu")
    assert env.admin("recompress", "--ratio", "16", "--id", str(job.source_id), "--local")[0] == 0
    old, current = _versions(env, job.source_id)
    assert current.superseded_by is None and old.removed_at is None

    Path(current.path).unlink()
    env.capsys.readouterr()
    assert main(["restore", str(job.source_id), "-o", str(env.root / "out")]) == 0
    said = env.capsys.readouterr()
    assert "restored 1 image(s)" in said.out and "(1 from an older version" in said.out
    missing = f"version {current.id}: archive file {current.path} is missing"
    assert f"{original}: {missing}: restored from version {old.id} of " in said.err
    with Image.open(env.root / "out" / "a.png") as image:
        assert image.size == (64, 64)

    Path(old.path).write_bytes(b"not what was archived")
    assert main(["restore", str(job.source_id), "-o", str(env.root / "again")]) == 1
    err = env.capsys.readouterr().err
    assert f"archive file {old.path} does not match its recorded sha256" in err
    assert "no intact version left to restore from" in err
    assert not (env.root / "again" / "a.png").exists()


def test_a_passthrough_version_is_restored_bit_exactly(archive_env: ArchiveEnv) -> None:
    env = archive_env
    tiny = env.inbox / "flat.png"
    Image.new("1", (64, 64), 1).save(tiny)  # a hundred bytes: a .aic at 24x would be bigger
    [source_id] = env.archived([tiny])
    [version] = _versions(env, source_id)
    assert version.kind is ArchiveKind.PASSTHROUGH
    code, text = env.admin("restore", str(source_id), "-o", str(env.root / "out"), "--format", "tiff")
    assert code == 0 and "restored 1 image(s)" in text
    assert (env.root / "out" / "flat.png").read_bytes() == tiny.read_bytes()  # bit for bit, as it was
