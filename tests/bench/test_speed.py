"""bench/speed.py at toy scale, so the README's time table stays reproducible."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.codec.conftest import photo_like

ROOT = Path(__file__).resolve().parents[2]


def test_speed_times_every_ratio_with_each_quantiser(tmp_path: Path) -> None:
    photo_like(160, 96).save(tmp_path / "a.png")   # big enough to reach 256x
    command = [sys.executable, str(ROOT / "bench" / "speed.py"), "--images", str(tmp_path),
               "--quantisers", "plain", "rdoq"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if re.match(r"\| \d+x \|", line)]
    assert [row.split(" | ")[0] for row in rows] == ["| 8x", "| 16x", "| 32x", "| 64x", "| 128x", "| 256x"]
    assert all(re.fullmatch(r"\| \d+x( \| \d+\.\d{3}){3} \|", row) for row in rows), rows
