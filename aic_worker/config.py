"""What a worker reads from its environment, in one place, so every process agrees on it.

Torch-free: the watcher and `aic-admin` import the broker and timing settings too.

| variable             | default                    | what it sets                                        |
|----------------------|----------------------------|-----------------------------------------------------|
| AIC_BROKER_URL       | (see below)                | the Redis broker (transport only)                   |
| AIC_DEVICE           | auto                       | auto, cpu or cuda:N (resolved after the fork)       |
| AIC_MODEL            | (catalog default, shipped) | weights for jobs of the model with this sha256      |
| AIC_ARCHIVE          | $AIC_HOME/archive          | archive root for `aic-admin add`                    |
| AIC_LEASE_SECONDS    | 300                        | how long a claim lasts without renewal              |
| AIC_REAP_SECONDS     | 60                         | how often a worker reaps and republishes            |
| AIC_TASK_TIME_LIMIT  | 3600                       | hard limit of one task (soft: 90 % of it)           |
| AIC_DB_RETRY_SECONDS | 0.8 × the lease            | how long a job waits for the database (< the lease) |
| AIC_MIN_PSNR         | 20 (0: off)                | PSNR floor (dB) before delete/move take an original |
| AIC_TORCH_THREADS    | cores / concurrency        | torch threads per worker process                    |
| AIC_BATCH            | 4                          | compress jobs of one model encoded together         |
| AIC_LOG_FORMAT       | text                       | json: one JSON object per line (observe/log_format) |
| AIC_METRICS_PORT     | (off)                      | /metrics and /healthz (observe/metrics_http)        |
| AIC_METRICS_ADDRESS  | 127.0.0.1                  | the address they listen on (0.0.0.0: every one)     |
| AIC_METRICS_SECONDS  | 15                         | how often the backlog gauges are measured           |
| AIC_GROUP_READABLE   | 0                          | 1: files 0640, folders 0750 (else 0600, 0700)       |

A job waits for the database no longer than its lease is proven held (jobs/heartbeat.py),
so AIC_DB_RETRY_SECONDS must be shorter than AIC_LEASE_SECONDS.

Without AIC_BROKER_URL the broker is the one `aic-admin run` started in AIC_HOME, while it
runs (it writes its URL to AIC_HOME/broker/url), else redis://127.0.0.1:6379/0.
AIC_GROUP_READABLE is read where files are made (private_files.py; the catalog's engine
needs it too, and this module imports the engine).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aic_worker.catalog.engine import data_dir

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
EMBEDDED_BROKER_URL_FILE = "broker/url"  # in AIC_HOME, while `aic-admin run` runs its own broker


def embedded_broker_url(env: Mapping[str, str] | None = None) -> str | None:
    """The URL of the broker `aic-admin run` started in AIC_HOME, while it runs (it writes this file)."""
    try:
        return (data_dir(env) / EMBEDDED_BROKER_URL_FILE).read_text().strip() or None
    except OSError:
        return None


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    value = float(raw)
    if not value > 0:
        raise ValueError(f"{name} must be a positive number, got {raw!r}")
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or str(default)).strip()
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {raw!r}")
    return int(raw)


DEFAULT_MIN_PSNR = 20.0  # dB: far below any ratio the shipped model reaches (256x: about 26 dB)


def _floor(env: Mapping[str, str], name: str, default: float) -> float | None:
    """A quality floor in dB; 0 (or `off`) turns it off (None)."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw == "off":
        return None
    value = float(raw)
    if value < 0:
        raise ValueError(f"{name} must be 0 (off) or a positive number of dB, got {raw!r}")
    return value or None


@dataclass(frozen=True)
class WorkerConfig:
    broker_url: str
    device: str
    archive_root: Path
    lease_seconds: float
    reap_seconds: float
    task_time_limit: float
    db_retry_seconds: float
    batch_size: int = 4  # compress jobs waiting for one model that a task claims and encodes together
    min_psnr: float | None = DEFAULT_MIN_PSNR  # dB before delete/move remove an original; a folder's wins

    def __post_init__(self) -> None:
        if self.db_retry_seconds >= self.lease_seconds:
            raise ValueError(
                f"AIC_DB_RETRY_SECONDS ({self.db_retry_seconds:g}) must be shorter than AIC_LEASE_SECONDS "
                f"({self.lease_seconds:g}): a job can't wait for the database past its lease"
            )

    @property
    def soft_time_limit(self) -> float:
        """Leaves the task a tenth of its time to record the failure before the hard kill."""
        return self.task_time_limit * 0.9

    @property
    def visibility_timeout(self) -> float:
        """Longer than the longest job, or Redis would hand a running job's message to a second worker."""
        return self.task_time_limit * 2

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        env = os.environ if env is None else env
        archive = env.get("AIC_ARCHIVE")
        lease = _number(env, "AIC_LEASE_SECONDS", 300)
        return cls(
            broker_url=env.get("AIC_BROKER_URL") or embedded_broker_url(env) or DEFAULT_BROKER_URL,
            device=env.get("AIC_DEVICE") or "auto",
            archive_root=Path(archive).expanduser() if archive else data_dir(env) / "archive",
            lease_seconds=lease,
            reap_seconds=_number(env, "AIC_REAP_SECONDS", 60),
            task_time_limit=_number(env, "AIC_TASK_TIME_LIMIT", 3600),
            db_retry_seconds=_number(env, "AIC_DB_RETRY_SECONDS", lease * 0.8),
            batch_size=_count(env, "AIC_BATCH", 4),
            min_psnr=_floor(env, "AIC_MIN_PSNR", DEFAULT_MIN_PSNR),
        )


def add_device_option(parser: argparse.ArgumentParser, *, when: str = "") -> None:
    """`--device`, the command line's AIC_DEVICE (aic-worker, aic-admin run, restore, recompress, verify)."""
    parser.add_argument("--device", help=f"{when}auto, cpu or cuda:N (default: AIC_DEVICE, else auto)")
