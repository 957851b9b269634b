"""How `aic-admin run` stops the processes it started: the leader first, the rest after."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from aic_worker.admin.child_process import stop_group
from tests.conftest import wait_for

# A leader that shuts down "warm" (0.5 s) on SIGTERM, with a child in its process group that
# stands for a pool process in the middle of a job: it notes any SIGTERM it gets.
LEADER = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[2]])
open(sys.argv[1] + ".ready", "w").close()
signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.5), sys.exit(0)))
while True:
    time.sleep(0.1)
"""
CHILD = """
import signal, time
signal.signal(signal.SIGTERM, lambda *_: open("{log}", "a").write("TERM\\n"))
while True:
    time.sleep(0.1)
"""


def test_sigterm_reaches_the_leader_alone_and_nothing_outlives_it(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    process = subprocess.Popen(
        [sys.executable, "-c", LEADER, str(tmp_path / "leader"), CHILD.replace("{log}", str(log))],
        start_new_session=True,
    )
    wait_for(lambda: (tmp_path / "leader.ready").exists(), 30, "the leader to start")
    time.sleep(0.5)  # the child's handler is in place
    assert stop_group(process, timeout=30) == 0
    assert not log.exists(), "the child got SIGTERM directly"

    def group_gone() -> bool:  # zombies waiting for init to reap them are gone too
        ps = subprocess.run(["ps", "-o", "stat=", "-g", str(process.pid)], capture_output=True, text=True)
        return all(stat.startswith("Z") for stat in ps.stdout.split())

    wait_for(group_gone, 10, "the rest of the group to be killed")
