"""bench/model_compare.py at toy scale, so the model card's comparisons stay reproducible."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.tiny_model import write_tiny_model
from tests.codec.conftest import photo_like

ROOT = Path(__file__).resolve().parents[2]


def compare(images: Path, reference: Path, candidate: Path) -> str:
    command = [sys.executable, str(ROOT / "bench" / "model_compare.py"), str(candidate), "--reference",
               str(reference), "--images", str(images), "--steps", "1", "8", "--end-to-end", "--threads", "1"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_a_model_against_itself_differs_by_nothing_and_another_by_something(tmp_path: Path) -> None:
    for seed in range(2):
        photo_like(160, 96, seed).save(tmp_path / f"p{seed}.png")
    one = write_tiny_model(tmp_path / "m/a.safetensors")
    other = write_tiny_model(tmp_path / "m/b.safetensors", seed=1)
    same = compare(tmp_path, one, one)
    rows = re.findall(r"^\| (\d+) \| [\d.]+ / [\d.]+ \| ([+-][\d.]+) / ([+-][\d.]+) \|$", same, re.M)
    assert [r[0] for r in rows] == ["1", "8"], same
    assert all(float(v) == 0 for r in rows for v in r[1:]), same
    assert re.search(r"PSNR \+0\.00 %.*MS-SSIM \+0\.00 %", same), same
    changed = compare(tmp_path, one, other)
    rows = re.findall(r"^\| \d+ \| [\d.]+ / [\d.]+ \| ([+-][\d.]+) / ([+-][\d.]+) \|$", changed, re.M)
    assert any(float(v) != 0 for r in rows for v in r), changed
