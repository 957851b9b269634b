"""`aic-admin restore`: images back from the catalog, in their layout, with EXIF, ICC and mtime."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageCms

from tests.admin.conftest import ArchiveEnv
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
