"""Processes `aic-admin run` starts (its broker and its worker): they must not outlive it."""

from __future__ import annotations

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
    """SIGTERM to the process group `process` leads (start_new_session), then SIGKILL after `timeout`."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode
