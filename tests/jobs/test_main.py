"""aic-worker's launcher (aic_worker/jobs/main.py): the environment its pool processes get."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Celery's worker_main replaced by a report of what the worker would start with: whether
# numpy was imported before main() set the environment, and the thread settings it set.
PROBE = """
import sys
import celery
seen = {}
def worker_main(self, argv=None):
    import os
    seen.update(blas=os.environ.get("OPENBLAS_NUM_THREADS"), torch=os.environ.get("AIC_TORCH_THREADS"))
celery.Celery.worker_main = worker_main
from aic_worker.jobs import main
numpy_first = "numpy" in sys.modules
main.main(sys.argv[1:])
print(numpy_first, seen["blas"], seen["torch"])
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("2", "2")])
def test_the_worker_keeps_numpys_blas_to_one_thread_unless_told(given: str | None, expected: str) -> None:
    unset = ("OPENBLAS_NUM_THREADS", "AIC_TORCH_THREADS", "PROMETHEUS_MULTIPROC_DIR", "AIC_METRICS_PORT")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    run = subprocess.run([sys.executable, "-c", PROBE, "--concurrency", "2"], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    numpy_first, blas, torch_threads = run.stdout.splitlines()[-1].split()
    assert numpy_first == "False"            # so OpenBLAS reads the variable when it loads
    assert blas == expected
    assert torch_threads == str(max(1, (os.cpu_count() or 1) // 2))
