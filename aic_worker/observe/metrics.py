"""The Prometheus metrics a worker counts while it runs jobs (served by monitoring.py).

| metric                             | type      | labels           | counts                               |
|------------------------------------|-----------|------------------|--------------------------------------|
| aic_worker_jobs_total              | counter   | kind, outcome    | tasks and batched jobs, by outcome   |
| aic_worker_job_seconds             | histogram | kind             | wall time of a task                  |
| aic_worker_batched_jobs_total      | counter   | kind             | jobs run inside another job's task   |
| aic_worker_encode_seconds          | histogram |                  | encoding time per image              |
| aic_worker_bytes_in_total          | counter   | kind             | bytes read: originals, .aic files    |
| aic_worker_bytes_out_total         | counter   | kind             | bytes written: .aic files, PNGs      |
| aic_worker_model_loaded            | gauge     | model_id, device | 1 for each model a pool process has  |

Outcomes: done, quarantined, failed, lease_lost, nothing_to_do (a duplicate or stale
message), retry (the database was away at the claim), failure (an unexpected error).
A job batched into another's task (jobs/batch.py) counts its own outcome, and a batch's
encoding time is shared out equally among its images.
The values are counted in the pool processes that run jobs; with PROMETHEUS_MULTIPROC_DIR
set (aic-worker sets it) each process writes them to its own file there and the worker's
main process adds them up when scraped. Torch-free.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from aic_worker.catalog.models import JobKind

SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 150, 300, 600, 1800, 3600)

JOBS = Counter("aic_worker_jobs", "Tasks run, by job kind and what became of the job", ["kind", "outcome"])
BATCHED = Counter("aic_worker_batched_jobs", "Jobs run inside another job's task (batching)", ["kind"])
JOB_SECONDS = Histogram("aic_worker_job_seconds", "Wall time of a task", ["kind"], buckets=SECONDS_BUCKETS)
ENCODE_SECONDS = Histogram("aic_worker_encode_seconds", "Time spent encoding an image (codec.compress)",
                           buckets=SECONDS_BUCKETS)
BYTES_IN = Counter("aic_worker_bytes_in", "Bytes jobs read: originals and .aic files", ["kind"])
BYTES_OUT = Counter("aic_worker_bytes_out", "Bytes jobs wrote: .aic files and restored PNGs", ["kind"])
# "max": a pool process that has exited still counts as having loaded its models.
MODEL_LOADED = Gauge("aic_worker_model_loaded", "1 for each codec model loaded by a pool process",
                     ["model_id", "device"], multiprocess_mode="max")


def count_io(kind: JobKind, *, read: int, written: int = 0) -> None:
    """Record a job's bytes read and written."""
    BYTES_IN.labels(kind.value).inc(read)
    if written:
        BYTES_OUT.labels(kind.value).inc(written)
