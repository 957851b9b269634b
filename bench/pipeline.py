"""Throughput benchmark: jobs per second through the real queue against the bare codec loop.

Both sides do the same codec work per image — read the file, compress at the ratio,
decode the result, measure PSNR and MS-SSIM (the worker's verification) — in the same run,
on the same images and the same number of torch threads. The pipeline adds the catalog
(SQLite, in a temp folder), a real Redis (a private redis-server when one is installed,
else AIC_BROKER_URL), a real `aic-worker` process (prefork, concurrency 1), the temp-file,
fsync, rename and commit of every job. The worker is warmed up (model loaded) first.

    python bench/pipeline.py [--images ../shared/data/kodak] [--limit N] [--ratio 32] [--model W]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sqlalchemy import func, select

from aic_worker.catalog.engine import create_catalog_engine, session_factory
from aic_worker.catalog.jobs import enqueue_job
from aic_worker.catalog.migrate import upgrade
from aic_worker.catalog.models import Job, JobKind, JobState
from aic_worker.catalog.sources import record_source
from aic_worker.codec import Codec
from aic_worker.codec.quality import ms_ssim, psnr
from aic_worker.config import WorkerConfig
from aic_worker.jobs.parameters import CompressParameters
from aic_worker.jobs.queue import make_app, publish
from aic_worker.model_choice import SHIPPED_MODEL, model_for_new_jobs

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def bare_loop(codec: Codec, images: list[Path], ratio: float) -> tuple[float, float]:
    """(seconds for the whole worker-equivalent loop, seconds for compress alone)."""
    start, encoding = time.perf_counter(), 0.0
    for path in images:
        image = Image.open(io.BytesIO(path.read_bytes()))
        image.load()
        t = time.perf_counter()
        data = codec.compress(image, ratio)
        encoding += time.perf_counter() - t
        decoded = np.asarray(codec.decompress(data).convert("RGB"))
        reference = np.asarray(image.convert("RGB"))
        psnr(reference, decoded), ms_ssim(reference, decoded)
    return time.perf_counter() - start, encoding


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_broker(work: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        return os.environ.get("AIC_BROKER_URL", "redis://127.0.0.1:6379/14"), None
    port = _free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--dir", str(work)], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return f"redis://127.0.0.1:{port}/0", process


def _wait_done(sessions, n: int, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions() as session:
            finished = session.scalar(
                select(func.count()).where(Job.state.in_((JobState.DONE, JobState.QUARANTINED)))
            )
        if finished >= n:
            return
        time.sleep(0.05)
    raise TimeoutError(f"jobs not finished after {timeout}s")


def pipeline_run(
    images: list[Path], ratio: float, model: Path, work: Path, *,
    batch: int | None = None, burst: bool = False,
) -> float:
    """Seconds from the first publish to the last job committed, after a warm-up job.

    `batch`: the worker's AIC_BATCH (None: its default). `burst`: record every job in the
    catalog before publishing any, so that they all wait together, as after a big drop.
    """
    broker_url, broker = _start_broker(work)
    url = f"sqlite:///{work / 'catalog.sqlite3'}"
    engine = create_catalog_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    env = {**os.environ, "AIC_DATABASE_URL": url, "AIC_BROKER_URL": broker_url, "AIC_MODEL": str(model),
           "AIC_DEVICE": "cpu", "AIC_TORCH_THREADS": str(torch.get_num_threads())}
    if batch is not None:
        env["AIC_BATCH"] = str(batch)
    app = make_app(WorkerConfig.from_env(env))
    log = open(work / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen([sys.executable, "-m", "aic_worker.jobs.main", "-c", "1", "-l", "WARNING"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        folder = work / "in"
        folder.mkdir()
        for path in images:
            shutil.copy(path, folder / path.name)

        def record(path: Path, job_ratio: float) -> int:
            data = path.read_bytes()
            with Image.open(path) as image:
                size, mode = image.size, image.mode
            with sessions() as session, session.begin():
                source = record_source(session, path=str(path), folder=str(folder),
                                       sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                                       mtime=datetime.now(UTC), width=size[0], height=size[1], mode=mode)
                model_row = model_for_new_jobs(session, env)
                params = CompressParameters(path, folder, work / "archive").to_json()
                job, _ = enqueue_job(session, JobKind.COMPRESS, source.id, target_ratio=job_ratio,
                                     model_id=model_row.id, parameters=params)
            return job.id

        publish(record(folder / images[0].name, ratio * 1.5), celery_app=app)  # warm-up: pool, model
        _wait_done(sessions, 1, timeout=600)
        start = time.perf_counter()
        if burst:
            for job_id in [record(folder / path.name, ratio) for path in images]:
                publish(job_id, celery_app=app)
        else:
            for path in images:
                publish(record(folder / path.name, ratio), celery_app=app)
        _wait_done(sessions, 1 + len(images))
        elapsed = time.perf_counter() - start
        with sessions() as session:
            bad = session.scalar(select(func.count()).where(Job.state != JobState.DONE))
        if bad:
            raise RuntimeError(f"{bad} job(s) did not finish: see {work / 'worker.log'}")
        return elapsed
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)
        log.close()
        engine.dispose()
        if broker is not None:
            broker.terminate()
            broker.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--limit", type=int, help="use only the first N images")
    parser.add_argument("--ratio", type=float, default=32)
    parser.add_argument("--model", type=Path, help="weights (default: AIC_MODEL, else the shipped model)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = parser.parse_args()
    model = args.model or Path(os.environ.get("AIC_MODEL") or SHIPPED_MODEL)
    images = sorted(args.images.glob("*.png"))[: args.limit]
    if not images:
        raise SystemExit(f"no PNG images in {args.images}")
    codec = Codec.load(model, "cpu")
    bare_loop(codec, images[:1], args.ratio)  # warm-up, as the worker gets one
    bare, encode_only = bare_loop(codec, images, args.ratio)
    with tempfile.TemporaryDirectory(prefix="aic-bench-") as tmp:
        piped = pipeline_run(images, args.ratio, model, Path(tmp))
    n = len(images)
    result = {
        "images": n, "ratio": args.ratio, "model": codec.model_id[:16],
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "bare_jobs_per_s": n / bare, "compress_only_per_s": n / encode_only,
        "pipeline_jobs_per_s": n / piped, "pipeline_over_bare": bare / piped,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps(result, indent=2))
    print(f"{n} images at ratio {args.ratio:g}, {result['torch_threads']} torch threads, CPU")
    print(f"bare codec loop (compress + verify): {result['bare_jobs_per_s']:.3f} jobs/s "
          f"(compress alone {result['compress_only_per_s']:.3f}/s)")
    print(f"through the queue (aic-worker -c 1): {result['pipeline_jobs_per_s']:.3f} jobs/s")
    print(f"pipeline / bare: {result['pipeline_over_bare']:.3f}")


if __name__ == "__main__":
    main()
