"""Processes `aic-admin run` starts (its broker and its worker): they must not outlive it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A `preexec_fn`: Linux sends the child SIGTERM when its parent dies, even by kill -9.

    Elsewhere a no-op: a clean stop still stops the children, a killed parent leaves them.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_group(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Stop `process` and the process group it leads (start_new_session); returns its exit status.

    SIGTERM goes to `process` alone, as systemd's KillMode=mixed does: a Celery worker's main
    process then shuts down warm, letting its pool processes finish their jobs, which a
    SIGTERM of their own would cut off (WorkerLostError). After `timeout`, or once it has
    exited, SIGKILL to whatever is left of its group.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            process.wait()
    _kill_group(process.pid)  # nothing of it may outlive it
    return process.returncode


def _kill_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is empty already
        os.killpg(group, signal.SIGKILL)
