"""Coverage-guided fuzzing (atheris, libFuzzer) of the `.aic` reader and `Codec.decompress`.

Every input is tried twice, as it came and resealed: the second time its header CRC,
section CRCs and achieved-ratio field are recomputed, so that mutations get past the
checksums into the header checks, the entropy decoder and the synthesis transform (a
fuzzer that only ever meets "CRC mismatch" tests nothing). Each is given to
`bitstream.unpack` and then to `Codec.decompress` of a tiny random model
(bench/tiny_model.py) whose own files seed the corpus: RGB, grey, RGBA, 1-bit and palette
images at several ratios.

Findings: any exception other than AicFormatError, and any input that takes over 1 s of
CPU time in one call (CPU time, not wall time: run under `nice` beside other work, a 10 ms
decode can wait seconds for a core; timed again three times when it does, the best of four
counting); each is saved to WORKDIR/findings with what happened. The last line gives
executions, executions per second and findings. Exit status 1 when there are findings.

    python bench/fuzz.py [--seconds 1200] [--runs N] [--workdir /tmp/aic-fuzz]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import struct
import sys
import time
import traceback
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import atheris  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_model import write_tiny_model  # noqa: E402

with atheris.instrument_imports(include=["aic_worker.codec"]):
    from aic_worker.codec import Codec, bitstream
    from aic_worker.codec.errors import AicFormatError

SLOW_SECONDS = 1.0
_FIELDS = struct.Struct("<B32sHH16sffHHBHHHB")  # bitstream's header fields (docs/format.md)


def reseal(data: bytes) -> bytes:
    """`data` with every CRC and the achieved ratio recomputed, as far as its structure goes."""
    start, crc_at = len(bitstream.MAGIC), len(bitstream.MAGIC) + _FIELDS.size
    if len(data) < bitstream.HEADER_SIZE or not data.startswith(bitstream.MAGIC):
        return data
    out = bytearray(data)
    pos = bitstream.HEADER_SIZE
    while pos < len(out):
        kind = out[pos]
        pos += 1
        name = b""
        if kind == bitstream.KIND_METADATA:
            if pos >= len(out):
                break
            name = bytes(out[pos + 1 : pos + 1 + out[pos]])
            pos += 1 + out[pos]
        elif kind != bitstream.KIND_GROUP:
            break
        size, shift = 0, 0
        while pos < len(out) and shift < 35:
            byte = out[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        end = pos + size
        if end + 4 > len(out):
            break
        out[end : end + 4] = struct.pack("<I", zlib.crc32(bytes(out[pos:end]), zlib.crc32(name)))
        pos = end + 4
    fields = list(_FIELDS.unpack_from(out, start))
    fields[6] = fields[2] * fields[3] * 3 / len(out)  # achieved = raw RGB bytes / file bytes
    out[start:crc_at] = _FIELDS.pack(*fields)
    out[crc_at : crc_at + 4] = struct.pack("<I", zlib.crc32(bytes(out[start:crc_at])))
    return bytes(out)


def seeds(codec: Codec) -> list[bytes]:
    rng = np.random.default_rng(0)
    made = []
    for size, mode, ratio in ((64, "RGB", 24), (48, "L", 16), (64, "RGBA", 16), (80, "RGB", 64),
                              (40, "1", 8), (64, "P", 24), (33, "RGB", 12)):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        pixels = (pixels // 4 + np.mgrid[0:size, 0:size][0][..., None] * 3).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB").convert(mode)
        with contextlib.suppress(ValueError):  # a ratio the tiny model cannot reach on this size
            made.append(codec.compress(image, ratio))
    return made


class Harness:
    def __init__(self, codec: Codec, workdir: Path, deadline: float, runs: int | None) -> None:
        self.codec, self.findings_dir = codec, workdir / "findings"
        self.findings_dir.mkdir(parents=True, exist_ok=True)
        self.deadline, self.runs = deadline, runs
        self.inputs = 0  # from libFuzzer
        self.executions = 0  # tries: each input as given and resealed
        self.findings: dict[str, dict[str, object]] = {}
        self.slowest = 0.0  # seconds of the slowest call (best of four when the first took over 1 s)
        self.spikes = 0  # calls over 1 s once, but not when timed again
        self.started = time.monotonic()
        self.stats = workdir / "stats.json"
        self._last_stats = 0.0

    def _finding(self, key: str, data: bytes, what: str) -> None:
        if key in self.findings:
            self.findings[key]["count"] = int(self.findings[key]["count"]) + 1  # type: ignore[call-overload]
            return
        name = hashlib.sha1(data).hexdigest()[:16]
        (self.findings_dir / f"{name}.aic").write_bytes(data)
        self.findings[key] = {"input": f"{name}.aic", "what": what, "count": 1}
        print(f"FINDING {key}: {what.splitlines()[-1] if what else ''} -> {name}.aic", flush=True)

    def _try(self, call, data: bytes, label: str) -> None:
        began = time.process_time()
        try:
            call(data)
        except AicFormatError:
            pass
        except Exception as error:  # the point: anything but AicFormatError is a finding
            frame = traceback.extract_tb(error.__traceback__)[-1]
            key = f"{label}: {type(error).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            self._finding(key, data, traceback.format_exc())
        seconds = time.process_time() - began
        if seconds > SLOW_SECONDS:  # the input, or a hiccup? The best of three more says.
            seconds = min(seconds, *(self._time(call, data) for _ in range(3)))
            if seconds <= SLOW_SECONDS:
                self.spikes += 1
        self.slowest = max(self.slowest, seconds)
        if seconds > SLOW_SECONDS:
            self._finding(f"{label}: over {SLOW_SECONDS:g} s", data, f"{seconds:.2f} s for {len(data)} bytes")

    @staticmethod
    def _time(call, data: bytes) -> float:
        began = time.process_time()
        with contextlib.suppress(Exception):
            call(data)
        return time.process_time() - began

    def __call__(self, data: bytes) -> None:
        self.inputs += 1
        for candidate in (data, reseal(data)):
            self.executions += 1
            self._try(bitstream.unpack, candidate, "unpack")
            self._try(self.codec.decompress, candidate, "decompress")
        now = time.monotonic()
        if now - self._last_stats > 5:
            self._write_stats(now)
        if now > self.deadline or (self.runs is not None and self.executions >= self.runs):
            self._write_stats(now)
            self.report(now)
            os._exit(1 if self.findings else 0)

    def _write_stats(self, now: float) -> None:
        self._last_stats = now
        seconds = now - self.started
        self.stats.write_text(json.dumps({
            "inputs": self.inputs, "executions": self.executions, "seconds": round(seconds, 1),
            "per_second": round(self.executions / max(seconds, 1e-9)),
            "slowest_call_s": round(self.slowest, 3), "load_spikes": self.spikes,
            "findings": self.findings,
        }, indent=1))

    def report(self, now: float) -> None:
        seconds = now - self.started
        for key, finding in self.findings.items():
            print(f"  {key}: {finding['count']} input(s), first saved as {finding['input']}")
        print(f"fuzz: executions {self.executions} ({self.inputs} inputs, each as given and resealed), "
              f"{seconds:.0f} s, {self.executions / seconds:.0f} per second, "
              f"slowest call {self.slowest:.3f} s ({self.spikes} slower once, not again), "
              f"findings {len(self.findings)} "
              f"(exceptions other than AicFormatError, calls over {SLOW_SECONDS:g} s of CPU time)",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1200, help="how long to fuzz (default 1200)")
    parser.add_argument("--runs", type=int, help="stop after this many executions instead")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/aic-fuzz"))
    parser.add_argument("--max-len", type=int, default=4096, help="longest input (default 4096 bytes)")
    args, libfuzzer = parser.parse_known_args()
    torch.set_num_threads(1)
    corpus = args.workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    codec = Codec.load(write_tiny_model(args.workdir / "tiny.safetensors"), "cpu")
    made = seeds(codec)
    for data in made:
        (corpus / f"seed-{hashlib.sha1(data).hexdigest()[:12]}.aic").write_bytes(data)
    print(f"fuzz: {len(made)} seed files by a tiny model ({', '.join(str(len(d)) for d in made)} bytes), "
          f"corpus {corpus}", flush=True)
    harness = Harness(codec, args.workdir, time.monotonic() + args.seconds, args.runs)
    atheris.Setup([sys.argv[0], *libfuzzer, f"-max_len={args.max_len}", "-timeout=60",
                   f"-artifact_prefix={args.workdir}/", "-print_final_stats=1", str(corpus)], harness)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
