"""bench/gpu.py at toy scale on the CPU (`--smoke`), so the GPU run cannot rot between GPUs,
and the packer's storage trick that the GPU run's data relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aic_worker.codec import Codec
from aic_worker.training.dataset import CropSampler, load_downscaled

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from pack_gpu_data import write_for_loader  # noqa: E402


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, float]:
    out = tmp_path_factory.mktemp("gpu-smoke")
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke", "--post-blocks", "4",
                          "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "gpu.json").read_text())
    return report, out, report["wall_s"]


def test_smoke_run_checks_the_cuda_path_on_the_cpu(smoke) -> None:
    report, _, wall = smoke
    assert report["errors"] == {}
    assert report["smoke"] is True and report["device"] == "cpu"
    path = report["cuda_path"]
    assert path["compared"].startswith("cpu-vs-cpu")        # said so: no CUDA in smoke mode
    assert path["symbols_identical"] is True and path["reencode_identical"] is True
    assert path["symbols_from"] == ["the decoder's entropy.decode"]
    decodes = [c for c in path["cases"] if "encoded_on" in c]
    assert {c["encoded_on"] for c in decodes} == {"cpu", "cuda"}
    assert all(c["psnr_cpu_vs_cuda_decode_db"] == "inf" for c in decodes)   # same device: same pixels
    assert wall < 180


def test_smoke_run_measures_throughput_and_trains(smoke) -> None:
    report, out, _ = smoke
    speed = report["throughput"]
    for what in ("encode", "decode", "analysis", "synthesis"):
        assert speed[f"{what}_images_per_s"] > 0
    training = report["training"]
    assert training["steps"] >= 1 and training["steps_per_s"] > 0
    assert training["precision"] == "bf16" and training["quantiser"] == "rdoq"
    for check in ("check_before", "check_after"):
        assert set(report[check]["latent"]["psnr_db"]) == {"step 0.2", "step 1", "step 4", "step 12"}
        assert all(v["psnr_db"] > 15 for v in report[check]["codec"].values())
    assert report["check_before"]["latent"]["model_id"] == report["model_id"]
    assert report["check_after"]["latent"]["model_id"] == training["model_id"] != report["model_id"]
    # What comes back from the device tool: at most 8 files of at most 16 MiB each.
    files = [p for p in out.iterdir() if p.is_file()]
    assert len(files) <= 8 and all(p.stat().st_size <= 16 * 2**20 for p in files)
    trained = Codec.load(out / training["weights"], device="cpu")
    assert trained.model_id == training["model_id"] and training["post_blocks"] == 4
    assert training["quantiser"] == "rdoq", "the decoder learns from symbols rounded as the encoder rounds"
    assert trained.model.cfg.post_blocks == 4 == len(trained.model.g_s.post_blocks)   # shipped (3) + 1
    joined = b"".join((out / name).read_bytes() for name in training["checkpoint_files"])
    assert joined[:8] and int.from_bytes(joined[:8], "little") < len(joined)   # a safetensors header


def test_packed_crops_load_back_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    write_for_loader(rgb, tmp_path / "crop.webp")
    assert np.array_equal(load_downscaled(tmp_path / "crop.webp", 1), rgb)


def test_sampler_cuts_the_same_crops_on_a_device() -> None:
    """A GPU's batch is cut there from resident photos, with the CPU's random draws (run here
    on the CPU through the same code path)."""
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((40, 50, 3), (30, 20, 3))]
    cpu = CropSampler(images, 16, seed=3)
    resident = CropSampler(images, 16, seed=3)
    for _ in range(3):
        a, b = cpu.batch(8), resident._device_batch(8, torch.device("cpu"))
        assert torch.equal(a, b) and b.is_contiguous(memory_format=torch.channels_last)
    same = CropSampler(images, 16, seed=3).batch(8, "cpu"), CropSampler(images, 16, seed=3).batch(8)
    assert torch.equal(*same)
