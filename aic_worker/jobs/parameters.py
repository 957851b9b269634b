"""What a compress job needs to know about the folder its original came from.

The message carries only the job id (DESIGN.md, invariant 1), so these settings travel in
the job's `parameters` JSON in the catalog. The watcher and `aic-admin add` build them; the
worker reads them back. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aic_worker.store.policy import Policy


@dataclass(frozen=True)
class CompressParameters:
    path: Path  # the original to read, and the one the policy applies to
    folder: Path  # the watched folder (or added folder) the archive layout mirrors
    archive_root: Path
    policy: Policy = Policy.KEEP
    done_dir: Path | None = None  # where the move policy puts originals

    def __post_init__(self) -> None:
        if self.policy is Policy.MOVE and self.done_dir is None:
            raise ValueError("the move policy needs a done folder")

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "folder": str(self.folder),
            "archive_root": str(self.archive_root),
            "policy": self.policy.value,
            "done_dir": None if self.done_dir is None else str(self.done_dir),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CompressParameters:
        """Raises ValueError (naming what is missing) for parameters a compress job can't run with."""
        try:
            done = data.get("done_dir")
            return cls(
                path=Path(data["path"]),
                folder=Path(data["folder"]),
                archive_root=Path(data["archive_root"]),
                policy=Policy(data.get("policy", Policy.KEEP)),
                done_dir=None if done is None else Path(done),
            )
        except KeyError as missing:
            raise ValueError(f"compress job parameters lack {missing}") from None
