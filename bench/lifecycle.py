"""An archive's later life, measured the way a user lives it (issue #15's table).

Each photo is archived at 16x with the delete policy (its original gone once archived), then
recompressed to 64x, once by truncation (`--method truncate`) and once by the default
(decode the stored version, encode that at 64x), in two separate archives. Reported per
photo: PSNR against the original of both, and of a fresh 64x encode of the original (the
best a recompress could do); then the archive folder's bytes by `du` against the catalog's
bytes on disk (versions not removed), and what a small JPEG at 16x is stored as.

Jobs run in this process as `aic-admin … --local` runs them (claimed under a lease, through
the real pipeline), on a SQLite catalog in a temp folder, with the shipped model on CPU.

    python -m bench.lifecycle                       # training photos (for tuning)
    python -m bench.lifecycle --images ../shared/data/kodak --names kodim01 kodim03 kodim07 kodim19
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select

from aic_worker.admin.job_batch import run_batch
from aic_worker.admin.worker_commands import record_file
from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.migrate import upgrade
from aic_worker.catalog.models import ArchiveVersion, JobKind, JobState
from aic_worker.codec import Codec
from aic_worker.codec.quality import measure, pixels_of
from aic_worker.jobs.parameters import CompressParameters, Method, RecompressParameters
from aic_worker.store.policy import Policy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN = DATA / "train" / "bsds500" / "train"
TRAIN_PHOTOS = ("100075", "100080", "105019")
SMALL_JPEG = TRAIN / "135069.jpg"  # 23.6 KB, 481x321: a .aic at 16x may take 28.9 KB


class Archive:
    """A catalog, an inbox and an archive folder in `root`, jobs run here."""

    def __init__(self, root: Path) -> None:
        self.inbox, self.folder = root / "inbox", root / "archive"
        self.inbox.mkdir(parents=True)
        os.environ["AIC_DATABASE_URL"] = f"sqlite:///{root / 'catalog.sqlite3'}"
        os.environ["AIC_HOME"] = str(root / "home")
        engine = create_catalog_engine()
        upgrade(engine)
        self.sessions = session_factory(engine)

    def archive(self, photos: list[Path], ratio: float) -> list[int]:
        jobs = []
        for photo in photos:
            copy = self.inbox / photo.name
            shutil.copyfile(photo, copy)
            params = CompressParameters(copy, self.inbox, self.folder, policy=Policy.DELETE)
            jobs.append(record_file(self.sessions(), params, ratio)[0])
        self._run([j.id for j in jobs], JobKind.COMPRESS)
        return [j.source_id for j in jobs]

    def recompress(self, source_ids: list[int], ratio: float, method: Method) -> None:
        with self.sessions() as session, session.begin():
            jobs = []
            for source_id in source_ids:
                model = session.scalar(
                    select(ArchiveVersion.model_id).where(ArchiveVersion.source_id == source_id)
                )
                parameters = RecompressParameters(method=method).to_json()
                jobs.append(enqueue_job(session, JobKind.RECOMPRESS, source_id, target_ratio=ratio,
                                        model_id=model, parameters=parameters)[0].id)
        self._run(jobs, JobKind.RECOMPRESS)

    def _run(self, job_ids: list[int], kind: JobKind) -> None:
        states = run_batch(self.sessions, job_ids, kind, local=True, device="cpu")
        if set(states.values()) != {JobState.DONE}:
            raise SystemExit(f"{kind.value} jobs did not all finish: {states}")

    def current(self, source_id: int) -> ArchiveVersion:
        with self.sessions() as session:
            return session.scalars(
                select(ArchiveVersion).where(
                    ArchiveVersion.source_id == source_id, ArchiveVersion.superseded_by.is_(None)
                )
            ).one()

    def bytes_on_disk(self) -> int:
        with self.sessions() as session:
            return session.scalar(
                select(func.sum(ArchiveVersion.bytes)).where(ArchiveVersion.removed_at.is_(None))
            )

    def du(self) -> int:
        """`du -sb` of the archive folder, less the folders' own sizes: the files' bytes."""
        total = int(subprocess.run(["du", "-sb", str(self.folder)], capture_output=True, text=True,
                                   check=True).stdout.split()[0])
        folders = sum(os.stat(d).st_size for d, _, _ in os.walk(self.folder))
        return total - folders


def psnr_against(original: Path, version: ArchiveVersion, codec: Codec) -> float:
    decoded = codec.decompress(Path(version.path).read_bytes())
    return measure(pixels_of(Image.open(original)), pixels_of(decoded))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=TRAIN)
    parser.add_argument("--names", nargs="+", default=list(TRAIN_PHOTOS), help="file stems in --images")
    args = parser.parse_args()
    photos = [next(args.images.glob(f"{name}.*")) for name in args.names]
    codec = Codec.load(device="cpu")
    print(f"# {platform.node()}, {platform.processor() or platform.machine()}, "
          f"{datetime.now(UTC):%Y-%m-%d}, model {codec.model_id[:12]}, CPU")
    with tempfile.TemporaryDirectory() as work:
        truncated, encoded = Archive(Path(work) / "truncate"), Archive(Path(work) / "encode")
        ids = truncated.archive(photos, 16)
        assert encoded.archive(photos, 16) == ids
        truncated.recompress(ids, 64, Method.TRUNCATE)
        encoded.recompress(ids, 64, Method.AUTO)
        print("photo | 16x | 64x by truncation | 64x re-encoded (default) | fresh 64x from the original")
        for photo, source_id in zip(photos, ids, strict=True):
            fresh = codec.decompress(codec.compress(Image.open(photo), 64))
            now = encoded.current(source_id)
            with encoded.sessions() as session:
                sixteen = session.get(ArchiveVersion, now.reference_version_id)  # what it was encoded from
            print(f"{photo.stem} | {sixteen.psnr:.2f} | "
                  f"{psnr_against(photo, truncated.current(source_id), codec):.2f} | "
                  f"{psnr_against(photo, now, codec):.2f} | "
                  f"{measure(pixels_of(Image.open(photo)), pixels_of(fresh))[0]:.2f} dB")
        for name, archive in (("truncate", truncated), ("encode", encoded)):
            print(f"archive after recompress ({name}): du {archive.du():,} bytes of files, catalog bytes on "
                  f"disk {archive.bytes_on_disk():,}")

        small = Archive(Path(work) / "small")
        [source_id] = small.archive([SMALL_JPEG], 16)
        version = small.current(source_id)
        print(f"{SMALL_JPEG.name} ({SMALL_JPEG.stat().st_size:,} bytes) at 16x: stored as "
              f"{version.kind.value} {Path(version.path).name}, {version.bytes:,} bytes, "
              f"ratio {version.achieved_ratio:.2f}, "
              f"bit-exact {Path(version.path).read_bytes() == SMALL_JPEG.read_bytes()}")


if __name__ == "__main__":
    main()
