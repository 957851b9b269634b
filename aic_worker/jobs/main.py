"""`aic-worker`: start a Celery worker for AIC jobs, with the options an operator needs.

Equivalent to `celery -A aic_worker.jobs.tasks worker -Q aic --pool prefork --concurrency N`, plus
AIC_DEVICE, AIC_BATCH, a torch thread count that shares the cores among the pool's processes and
numpy's BLAS in one thread (OPENBLAS_NUM_THREADS, unless set).

Pools and CUDA: the default prefork pool works on a GPU because nothing in the parent
touches CUDA — each child resolves AIC_DEVICE and loads the model on its first job, after
the fork (a CUDA context does not survive a fork). Each child then holds its own model and
CUDA context, so on one GPU use a small --concurrency (1–2). Prefork is also the only pool
that enforces the hard time limit. `--pool solo` (one process, no fork) works too, but
without time limits.

Stopping: SIGTERM (or Ctrl-C) makes a warm shutdown: no new job is taken and the running one
finishes and commits (docs/cli.md). Only the main process may get the signal, so each pool
process moves into a process group of its own when it starts: a SIGTERM to the worker's
whole group (systemd's default KillMode, `kill -TERM -PGID`, a terminal) reaches the main
process alone and the job in hand is not cut off (WorkerLostError). Pool processes still
die with the main process (Celery sets their parent-death signal), and a cold shutdown or
a hard time limit still terminates them by pid.

Observing: with AIC_METRICS_PORT set the worker serves /metrics and /healthz
(observe/monitoring.py), and AIC_LOG_FORMAT=json makes every log line a JSON object (without
Celery's banner). Pool processes count into PROMETHEUS_MULTIPROC_DIR, which is set up here,
before anything imports prometheus_client.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from celery.signals import worker_process_init

from aic_worker.config import add_device_option
from aic_worker.jobs.queue import QUEUE
from aic_worker.observe.log_format import configure_logging, log_format
from aic_worker.observe.metrics_http import MetricsSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aic-worker", description="Run an AIC job worker (Celery).")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="pool processes (default 1)")
    add_device_option(parser)
    parser.add_argument("-Q", "--queues", default=QUEUE, help=f"comma-separated queues (default {QUEUE})")
    parser.add_argument("-P", "--pool", default="prefork", choices=["prefork", "solo"],
                        help="prefork (default; time limits enforced) or solo")
    parser.add_argument("--batch", type=int,
                        help="compress jobs of a model encoded together (default: AIC_BATCH, else 4; 1: off)")
    parser.add_argument("-n", "--hostname", help="worker name, e.g. gpu1@%%h")
    parser.add_argument("-l", "--loglevel", default="INFO")
    return parser


def _metrics_dir(settings: MetricsSettings) -> str | None:
    """Where pool processes count; returns a directory made here, for the caller to remove.

    A PROMETHEUS_MULTIPROC_DIR given is emptied: an earlier run's values would add to this
    run's. Without one, AIC_METRICS_PORT gets a new directory.
    """
    if given := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return None
    if settings.port is None:
        return None
    made = tempfile.mkdtemp(prefix="aic-worker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    return made


def _own_process_group(**_: object) -> None:
    """Celery's worker_process_init, in each new pool process: out of the main process's group."""
    os.setpgid(0, 0)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.concurrency < 1:
        raise SystemExit("aic-worker: --concurrency must be at least 1")
    if args.batch is not None and args.batch < 1:
        raise SystemExit("aic-worker: --batch must be at least 1")
    try:
        json_logs = log_format() == "json"
        made = _metrics_dir(MetricsSettings.from_env())
    except ValueError as error:
        raise SystemExit(f"aic-worker: {error}") from None
    if args.device:
        os.environ["AIC_DEVICE"] = args.device
    if args.batch is not None:
        os.environ["AIC_BATCH"] = str(args.batch)
    cores = os.cpu_count() or 1
    os.environ.setdefault("AIC_TORCH_THREADS", str(max(1, cores // args.concurrency)))
    # numpy's BLAS (the entropy coder's small cost products) in one thread, set before numpy is
    # imported: a BLAS thread per core spins against torch's threads and the other pool
    # processes. On the 2-core CPU beside one busy process, the coder's cost tables of a
    # 768x512 encode at 32x took 0.36 s with OpenBLAS's default threads and 0.03 s with one.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from aic_worker.jobs.tasks import app  # after the environment is set: it reads it on import

    worker_argv = ["worker", "-Q", args.queues, "-P", args.pool, "-c", str(args.concurrency),
                   "-l", args.loglevel]
    if args.hostname:
        worker_argv += ["-n", args.hostname]
    if json_logs:
        worker_argv.insert(0, "--quiet")  # no banner: every line the worker writes is JSON,
        configure_logging(args.loglevel)  # warnings before Celery sets its logging up too
    parent = os.getpid()
    worker_process_init.connect(_own_process_group, weak=False)
    try:
        app.worker_main(worker_argv)
    finally:
        if made and os.getpid() == parent:  # not in a pool process on its way out
            shutil.rmtree(made, ignore_errors=True)


if __name__ == "__main__":
    main()
