"""What compress and recompress jobs need to know beyond their kind, ratio and model.

The message carries only the job id (DESIGN.md, invariant 1), so these settings travel in
the job's `parameters` JSON in the catalog. The watcher, `aic-admin add` and `aic-admin
recompress`/`repair` build them; the worker reads them back. A key that is absent takes its
default, so jobs written by release 0.3.0 still run. Torch-free.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aic_worker.store.policy import Policy
from aic_worker.store.retention import DEFAULT_KEEP_VERSIONS


class IfBigger(enum.StrEnum):
    """What a compress job does when the `.aic` at the folder's ratio is not smaller than the original."""

    PASSTHROUGH = "passthrough"  # store the original's bytes as the archive version (store/archive.py)
    LEAVE = "leave"  # store nothing; the job is quarantined with the sizes as its reason


class Method(enum.StrEnum):
    """How a recompress job makes the new version."""

    AUTO = "auto"  # encode from the original if it is there, else from the newest intact version
    TRUNCATE = "truncate"  # cut the current .aic down: no encoder, same model, 2–6 dB worse at 16x → 64x


def keep_versions_of(value: Any) -> int:
    """A keep-versions count (at least 1: the current version); ValueError naming the bad value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"keep_versions must be a whole number of at least 1, got {value!r}")
    return value


def min_psnr_of(value: Any) -> float:
    """A folder's quality floor in dB (0: off for the folder); ValueError naming the bad value."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(f"min_psnr must be 0 (off) or a positive number of dB, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class CompressParameters:
    path: Path  # the original to read, and the one the policy applies to
    folder: Path  # the watched folder (or added folder) the archive layout mirrors
    archive_root: Path
    policy: Policy = Policy.KEEP
    done_dir: Path | None = None  # where the move policy puts originals
    keep_versions: int = DEFAULT_KEEP_VERSIONS  # archive versions whose files stay, the current one included
    if_bigger: IfBigger = IfBigger.PASSTHROUGH
    # The folder's quality floor (dB) before delete or move removes the original from the folder:
    # None (absent from the JSON, as in every job before it existed) takes the worker's AIC_MIN_PSNR,
    # 0 turns the floor off for the folder.
    min_psnr: float | None = None

    def __post_init__(self) -> None:
        if self.policy is Policy.MOVE and self.done_dir is None:
            raise ValueError("the move policy needs a done folder")
        keep_versions_of(self.keep_versions)
        if self.min_psnr is not None:
            min_psnr_of(self.min_psnr)

    def to_json(self) -> dict[str, Any]:
        """`min_psnr` only when the folder names a floor: absent, the job takes the worker's."""
        floor = {} if self.min_psnr is None else {"min_psnr": self.min_psnr}
        return {
            "path": str(self.path),
            "folder": str(self.folder),
            "archive_root": str(self.archive_root),
            "policy": self.policy.value,
            "done_dir": None if self.done_dir is None else str(self.done_dir),
            "keep_versions": self.keep_versions,
            "if_bigger": self.if_bigger.value,
            **floor,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CompressParameters:
        """Raises ValueError (naming what is missing or wrong) for parameters a job can't run with."""
        try:
            done = data.get("done_dir")
            return cls(
                path=Path(data["path"]),
                folder=Path(data["folder"]),
                archive_root=Path(data["archive_root"]),
                policy=Policy(data.get("policy", Policy.KEEP)),
                done_dir=None if done is None else Path(done),
                keep_versions=data.get("keep_versions", DEFAULT_KEEP_VERSIONS),
                if_bigger=IfBigger(data.get("if_bigger", IfBigger.PASSTHROUGH)),
                min_psnr=data.get("min_psnr"),
            )
        except KeyError as missing:
            raise ValueError(f"compress job parameters lack {missing}") from None


@dataclass(frozen=True)
class RecompressParameters:
    """A recompress job's choices; `repair`: the current version is damaged and is made again.

    `keep_versions` None: the source's folder setting (its compress job's parameters).
    """

    method: Method = Method.AUTO
    keep_versions: int | None = None
    repair: bool = False

    def __post_init__(self) -> None:
        if self.keep_versions is not None:
            keep_versions_of(self.keep_versions)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method.value, "keep_versions": self.keep_versions, "repair": self.repair}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecompressParameters:
        """Raises ValueError naming the bad value."""
        return cls(
            method=Method(data.get("method", Method.AUTO)),
            keep_versions=data.get("keep_versions"),
            repair=bool(data.get("repair", False)),
        )
