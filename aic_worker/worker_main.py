"""`aic-worker`: start a Celery worker for AIC jobs, with the options an operator needs.

Equivalent to `celery -A aic_worker.tasks worker -Q aic --pool prefork --concurrency N`, plus
AIC_DEVICE and a torch thread count that shares the cores among the pool's processes.

Pools and CUDA: the default prefork pool works on a GPU because nothing in the parent
touches CUDA — each child resolves AIC_DEVICE and loads the model on its first job, after
the fork (a CUDA context does not survive a fork). Each child then holds its own model and
CUDA context, so on one GPU use a small --concurrency (1–2). Prefork is also the only pool
that enforces the hard time limit. `--pool solo` (one process, no fork) works too, but
without time limits.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from aic_worker.queue import QUEUE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aic-worker", description="Run an AIC job worker (Celery).")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="pool processes (default 1)")
    parser.add_argument("--device", help="auto, cpu or cuda:N (default: AIC_DEVICE, else auto)")
    parser.add_argument("-Q", "--queues", default=QUEUE, help=f"comma-separated queues (default {QUEUE})")
    parser.add_argument("-P", "--pool", default="prefork", choices=["prefork", "solo"],
                        help="prefork (default; time limits enforced) or solo")
    parser.add_argument("-n", "--hostname", help="worker name, e.g. gpu1@%%h")
    parser.add_argument("-l", "--loglevel", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.concurrency < 1:
        raise SystemExit("aic-worker: --concurrency must be at least 1")
    if args.device:
        os.environ["AIC_DEVICE"] = args.device
    cores = os.cpu_count() or 1
    os.environ.setdefault("AIC_TORCH_THREADS", str(max(1, cores // args.concurrency)))
    from aic_worker.tasks import app  # after the environment is set: it reads it on import

    worker_argv = ["worker", "-Q", args.queues, "-P", args.pool, "-c", str(args.concurrency),
                   "-l", args.loglevel]
    if args.hostname:
        worker_argv += ["-n", args.hostname]
    app.worker_main(worker_argv)


if __name__ == "__main__":
    main()
