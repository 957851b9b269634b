"""bench/chaos.py and bench/fuzz.py at toy scale, so the README's figures stay reproducible."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


HAS_SERVERS = bool(list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) and shutil.which("redis-server"))


@pytest.mark.skipif(not HAS_SERVERS, reason="needs PostgreSQL's pg_ctl and redis-server")
def test_chaos_loses_nothing_and_archives_nothing_twice(tmp_path: Path) -> None:
    # /tmp: the postgres user (when this runs as root) must reach the data directory.
    work = Path(subprocess.check_output(["mktemp", "-d", "/tmp/aic-chaos-XXXXXX"], text=True).strip())
    work.chmod(0o755)
    try:
        run = subprocess.run([sys.executable, str(BENCH / "chaos.py"), "--files", "8", "--workdir", str(work),
                              "--deadline", "300"], cwd=ROOT, capture_output=True, text=True, timeout=420)
        line = last_line(run.stdout)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert re.match(r"chaos: files 8, archived once 8, lost 0, twice 0, temp files left 0, "
                        r"verify failures 0, quarantined 0, \d+ s$", line), line
        assert "Redis restarted" in run.stdout and "PostgreSQL restarted" in run.stdout
        assert "watcher kill -9'd" in run.stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_fuzz_reaches_past_the_checksums_and_reports_its_figures(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    sys.path.insert(0, str(BENCH))
    try:
        from fuzz import reseal
    finally:
        sys.path.remove(str(BENCH))
    from aic_worker.codec import bitstream
    from aic_worker.codec.errors import AicFormatError

    golden = next((ROOT / "tests" / "codec" / "fixtures").rglob("*.aic")).read_bytes()
    assert reseal(golden) == golden  # a sound file is left as it is
    damaged = bytearray(golden)
    damaged[-10] ^= 0x55  # inside the last group's payload: its CRC no longer matches
    with pytest.raises(AicFormatError, match="CRC"):
        bitstream.unpack(bytes(damaged))
    bitstream.unpack(reseal(bytes(damaged)))  # resealed, the damage reaches the decoder

    command = [sys.executable, str(BENCH / "fuzz.py"), "--runs", "400", "--workdir", str(tmp_path)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    line = last_line(run.stdout)
    assert re.match(r"fuzz: executions \d+ \(\d+ inputs, each as given and resealed\), \d+ s, \d+ per "
                    r"second, slowest call [\d.]+ s \(\d+ slower once, not again\), findings 0 ", line), \
        run.stdout[-3000:]
    assert run.returncode == 0
