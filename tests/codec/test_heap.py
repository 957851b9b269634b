"""heap.fix_mmap_threshold: freed big arrays leave the process once it is set."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

# After a 30 MiB block is freed glibc maps only blocks over 30 MiB on their own; 6 MiB
# arrays then come from the heap, and freeing them (pinned apart by small ones) keeps
# their pages. Prints the MiB that deleting forty of them gave back.
PROBE = """
import os
import sys
import numpy as np
from aic_worker.codec import heap
if sys.argv[1] == "fixed":
    assert heap.fix_mmap_threshold()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
big = np.ones(30 << 20, np.uint8)
del big
blocks = []
for _ in range(40):
    blocks.append(np.ones(6 << 20, np.uint8))
    blocks.append(np.ones(64 << 10, np.uint8))
before = rss()
del blocks[0::2]
print(round(before - rss()))
"""


def _glibc() -> bool:
    return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


@pytest.mark.skipif(not _glibc(), reason="glibc's malloc only")
def test_a_fixed_threshold_gives_freed_big_arrays_back() -> None:
    # malloc settings of the caller's environment (or another allocator) would decide the outcome
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    freed = {}
    for mode in ("dynamic", "fixed"):
        run = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                             timeout=60, check=True, env=env)
        freed[mode] = int(run.stdout.split()[-1])
    assert freed["fixed"] >= 200          # forty 6 MiB arrays: 240 MiB
    assert freed["dynamic"] < 100         # what the codec's big images suffered before


def test_a_codec_fixes_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    from aic_worker.codec import Codec, heap
    from tests.codec.conftest import make_model

    calls: list[int] = []
    monkeypatch.setattr(heap, "fix_mmap_threshold", lambda: calls.append(1) or True)
    Codec.from_model(make_model(1))
    assert calls
