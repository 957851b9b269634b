"""Compress and recompress jobs that wait together are encoded together: their tiles share forward passes.

```
 task for job A, claimed ─► claim up to AIC_BATCH − 1 more claimable compress or recompress jobs of A's model
   ─► each: read what it encodes from, check, decode (pipeline.READERS: read_compress, read_recompress)
   ─► Codec.compress_batch: one analysis pass per tile shape, rate control per image
   ─► each on its own: stage, fsync, verify decode, place, commit, retire, policy (Encoding.write)
```
A recompress by truncation needs no encoder: it is finished when it is read.
A companion is claimed like any job (lease.claim: an attempt counted, its lease renewed
while the batch runs) and each job's errors are settled on their own (runner.settle):
one corrupt image or lost lease fails that job only. When a companion's own message comes,
its job is done (or held, or backing off) and the message does nothing (invariant 3).
The batch size is a worker setting: AIC_BATCH or `aic-worker --batch N`; 1 turns it off.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from datetime import timedelta
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from aic_worker.catalog import lease
from aic_worker.catalog.models import Job
from aic_worker.codec_cache import CodecCache
from aic_worker.config import WorkerConfig
from aic_worker.jobs.heartbeat import LeaseHeartbeat
from aic_worker.jobs.pipeline import READERS, Encoding, JobContext, encoding_error
from aic_worker.jobs.runner import execute, job_context, settle
from aic_worker.observe import metrics
from aic_worker.observe.log_format import job_scope

log = logging.getLogger(__name__)
KINDS = tuple(READERS)  # the kinds a batch takes: compress, recompress


def claim_companions(
    sessions: sessionmaker[Session], job: Job, owner: str, config: WorkerConfig
) -> list[Job]:
    """Up to batch_size − 1 more claimable jobs of KINDS and `job`'s model, leased to `owner` (committed).

    Oldest first, as the reaper and the broker would hand them out. An error here only
    means no batch: `job` itself is claimed already and runs alone.
    """
    if job.kind not in KINDS or job.model_id is None or config.batch_size < 2:
        return []
    length = timedelta(seconds=config.lease_seconds)
    found: list[Job] = []
    try:
        with sessions() as session, session.begin():
            while len(found) < config.batch_size - 1:
                more = lease.claim(session, owner, kinds=KINDS, model_id=job.model_id, lease=length)
                if more is None:
                    break
                found.append(more)
    except Exception:
        log.warning("job %s: could not claim jobs to batch with it; it runs alone", job.id, exc_info=True)
        return []
    return found


def execute_batched(
    sessions: sessionmaker[Session], codecs: CodecCache, job: Job, owner: str, config: WorkerConfig
) -> str:
    """Run claimed `job` with the jobs of KINDS waiting for its model batched in; `job`'s outcome."""
    companions = claim_companions(sessions, job, owner, config)
    if not companions:
        return execute(sessions, codecs, job, owner, config)
    log.info("job %s: batched with job(s) %s", job.id, ", ".join(str(c.id) for c in companions))
    outcome, *others = execute_batch(sessions, codecs, [job, *companions], owner, config)
    for companion, other in zip(companions, others, strict=True):
        metrics.JOBS.labels(companion.kind.value, other.replace(" ", "_")).inc()  # no task of their own
        metrics.BATCHED.labels(companion.kind.value).inc()
    return outcome


def execute_batch(
    sessions: sessionmaker[Session], codecs: CodecCache, jobs: list[Job], owner: str, config: WorkerConfig
) -> list[str]:
    """Run claimed `jobs` of KINDS (all held by `owner`, one model) as one batch; each one's outcome."""
    length = timedelta(seconds=config.lease_seconds)
    with ExitStack() as stack:
        contexts = [
            job_context(sessions, codecs, owner, config,
                        stack.enter_context(LeaseHeartbeat(sessions, job.id, owner, length)))
            for job in jobs
        ]
        outcomes: list[str | None] = [None] * len(jobs)
        reads: dict[int, Encoding] = {}
        for i, (ctx, job) in enumerate(zip(contexts, jobs, strict=True)):
            with job_scope(job.id):
                outcomes[i] = settle(ctx, job, config, partial(_read, reads, i, ctx, job))
        for i, result in _encode(reads).items():
            write = partial(_write, reads[i], result)
            with job_scope(jobs[i].id):
                outcomes[i] = settle(contexts[i], jobs[i], config, write)
    return [outcome or "done" for outcome in outcomes]


def _read(reads: dict[int, Encoding], i: int, ctx: JobContext, job: Job) -> None:
    encoding = READERS[job.kind](ctx, job)
    if encoding is not None:  # None: finished already (a truncation)
        reads[i] = encoding


def _encode(reads: dict[int, Encoding]) -> dict[int, bytes | Exception]:
    """Each read job's `.aic` bytes, or what stopped them; one compress_batch per model."""
    by_model: dict[str, list[int]] = {}
    for i, read in reads.items():
        by_model.setdefault(read.codec.model_id, []).append(i)
    results: dict[int, bytes | Exception] = {}
    for members in by_model.values():
        codec = reads[members[0]].codec
        start = time.perf_counter()
        try:
            images, ratios = [reads[i].image for i in members], [reads[i].ratio for i in members]
            encoded = codec.compress_batch(images, ratios)
        except Exception as error:  # the time limit, say: every job of the batch gets it
            encoded = [error] * len(members)
        share = (time.perf_counter() - start) / len(members)
        for i, result in zip(members, encoded, strict=True):
            metrics.ENCODE_SECONDS.observe(share)
            results[i] = result
    return results


def _write(read: Encoding, result: bytes | Exception) -> None:
    if isinstance(result, Exception):
        error = encoding_error(result, read.name)
        if error is result:
            raise result
        raise error from result
    read.write(result)
