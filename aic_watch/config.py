"""What to watch and how: a TOML file (`AIC_CONFIG`) or, for one folder, command-line flags.

```toml
stability_window = 2.0     # seconds a file's size and mtime must hold still (default 2)
rescan_interval = 300      # seconds between reconciliation scans (default 300)

[[folders]]
path = "/srv/inbox"        # the watched folder
ratio = 32                 # target ratio of its archives
archive = "/srv/archive"   # archive root (may lie inside the folder: its outputs are never taken in)
recursive = true           # default true
patterns = ["png", "jpg"]  # extensions (default: every supported one)
policy = "move"            # keep (default) | move | delete: what the worker does with the original
done_dir = "/srv/done"     # where `move` puts originals (required for it)
keep_versions = 2          # archive versions whose files stay after a recompress (default 1)
if_bigger = "leave"        # passthrough (default): store the original's bytes when a .aic would
                           # not be smaller | leave: store nothing, quarantine the job
min_psnr = 32              # PSNR (dB) an archive must reach before delete or move removes the
                           # original (default: the worker's AIC_MIN_PSNR; 0: no floor here)
observer = "polling"       # inotify (default) | polling: network shares send no inotify events
poll_interval = 5.0        # seconds between polls (default 5)
```
The codec model is `AIC_MODEL_ID` (a registered model's sha256) when set, else the one
aic_worker.model_choice picks for every new job. Every path is made absolute and resolved
once, here, so that catalog paths, the archive's exclusion and the symlink-escape check all
compare like with like.
"""

from __future__ import annotations

import enum
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aic_worker.jobs.parameters import CompressParameters, IfBigger, keep_versions_of, min_psnr_of
from aic_worker.store.policy import Policy
from aic_worker.store.retention import DEFAULT_KEEP_VERSIONS

BASE_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "gif")
HEIC_EXTENSIONS = ("heic", "heif")
DEFAULT_STABILITY_WINDOW = 2.0
DEFAULT_RESCAN_INTERVAL = 300.0
DEFAULT_POLL_INTERVAL = 5.0


class ConfigError(ValueError):
    """The configuration can't be used; the message says which setting and why."""


class ObserverKind(enum.StrEnum):
    INOTIFY = "inotify"
    POLLING = "polling"


def heic_supported() -> bool:
    """Whether a Pillow HEIC plugin (pillow-heif) is installed; registers it if so."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def supported_extensions() -> tuple[str, ...]:
    return BASE_EXTENSIONS + (HEIC_EXTENSIONS if heic_supported() else ())


@dataclass(frozen=True)
class FolderConfig:
    """One watched folder: where, at which ratio, into which archive, and how to watch it."""

    path: Path
    ratio: float
    archive: Path
    recursive: bool = True
    patterns: frozenset[str] = field(default_factory=lambda: frozenset(supported_extensions()))
    policy: Policy = Policy.KEEP
    done_dir: Path | None = None
    observer: ObserverKind = ObserverKind.INOTIFY
    poll_interval: float = DEFAULT_POLL_INTERVAL
    keep_versions: int = DEFAULT_KEEP_VERSIONS
    if_bigger: IfBigger = IfBigger.PASSTHROUGH
    min_psnr: float | None = None  # None: the worker's AIC_MIN_PSNR; 0: no floor for this folder

    def job_parameters(self, path: str) -> dict[str, Any]:
        """What a compress job for the file at `path` tells the worker, through the catalog."""
        return CompressParameters(
            path=Path(path),
            folder=self.path,
            archive_root=self.archive,
            policy=self.policy,
            done_dir=self.done_dir,
            keep_versions=self.keep_versions,
            if_bigger=self.if_bigger,
            min_psnr=self.min_psnr,
        ).to_json()


@dataclass(frozen=True)
class WatchConfig:
    folders: tuple[FolderConfig, ...]
    stability_window: float = DEFAULT_STABILITY_WINDOW
    rescan_interval: float = DEFAULT_RESCAN_INTERVAL
    database_url: str | None = None  # None: the catalog's own default (AIC_DATABASE_URL, AIC_HOME)
    model_id: str | None = None  # AIC_MODEL_ID; None: aic_worker.model_choice decides


def _absolute(value: str | Path) -> Path:
    return Path(value).expanduser().resolve()


def _patterns(values: Iterable[str]) -> frozenset[str]:
    """Extensions, accepted as `png`, `.png` or `*.png`, compared case-insensitively."""
    if isinstance(values, str):
        raise ConfigError(f"patterns must be a list of extensions, got {values!r}")
    supported = supported_extensions()
    patterns = frozenset(v.strip().lower().removeprefix("*").removeprefix(".") for v in values)
    unknown = sorted(patterns - set(supported))
    if unknown:
        hint = " (install pillow-heif for HEIC)" if set(unknown) & set(HEIC_EXTENSIONS) else ""
        raise ConfigError(f"unsupported patterns {unknown}; supported: {list(supported)}{hint}")
    if not patterns:
        raise ConfigError("patterns is empty: nothing would ever be taken")
    return patterns


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def make_folder(
    path: str | Path,
    *,
    ratio: float,
    archive: str | Path,
    recursive: bool = True,
    patterns: Iterable[str] | None = None,
    policy: str = "keep",
    done_dir: str | Path | None = None,
    observer: str = "inotify",
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    keep_versions: int = DEFAULT_KEEP_VERSIONS,
    if_bigger: str = IfBigger.PASSTHROUGH.value,
    min_psnr: float | None = None,
) -> FolderConfig:
    """A checked FolderConfig; the one constructor both the TOML file and the flags go through."""
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not ratio > 1:
        raise ConfigError(f"ratio of {path} must be a number above 1, got {ratio!r}")
    if not isinstance(recursive, bool):
        raise ConfigError(f"recursive of {path} must be true or false, got {recursive!r}")
    try:
        policy_value = Policy(policy)
        observer_value = ObserverKind(observer)
        if_bigger_value = IfBigger(if_bigger)
        keep_versions_of(keep_versions)
        min_psnr_value = None if min_psnr is None else min_psnr_of(min_psnr)
    except ValueError as error:
        raise ConfigError(f"folder {path}: {error}") from None
    folder = FolderConfig(
        path=_absolute(path),
        ratio=float(ratio),
        archive=_absolute(archive),
        recursive=recursive,
        patterns=_patterns(patterns) if patterns is not None else frozenset(supported_extensions()),
        policy=policy_value,
        done_dir=_absolute(done_dir) if done_dir else None,
        observer=observer_value,
        poll_interval=_positive("poll_interval", poll_interval),
        keep_versions=keep_versions,
        if_bigger=if_bigger_value,
        min_psnr=min_psnr_value,
    )
    if folder.policy is Policy.MOVE and folder.done_dir is None:
        raise ConfigError(f"folder {folder.path}: policy 'move' needs a done_dir")
    if folder.policy is not Policy.MOVE and folder.done_dir is not None:
        raise ConfigError(f"folder {folder.path}: done_dir is only used with policy 'move'")
    if folder.path == folder.archive or folder.path.is_relative_to(folder.archive):
        raise ConfigError(f"folder {folder.path} lies inside its archive root {folder.archive}")
    return folder


FOLDER_KEYS = {
    "path",
    "ratio",
    "archive",
    "recursive",
    "patterns",
    "policy",
    "done_dir",
    "observer",
    "poll_interval",
    "keep_versions",
    "if_bigger",
    "min_psnr",
}
TOP_KEYS = {"stability_window", "rescan_interval", "database_url", "folders"}


def make_config(
    folders: Iterable[FolderConfig],
    *,
    stability_window: float = DEFAULT_STABILITY_WINDOW,
    rescan_interval: float = DEFAULT_RESCAN_INTERVAL,
    database_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> WatchConfig:
    """A checked WatchConfig; the model comes from `AIC_MODEL_ID` when set."""
    env = os.environ if env is None else env
    folders = tuple(folders)
    if not folders:
        raise ConfigError("no folders to watch")
    for i, a in enumerate(folders):
        for b in folders[i + 1 :]:
            if a.path == b.path or a.path.is_relative_to(b.path) or b.path.is_relative_to(a.path):
                raise ConfigError(f"watched folders {a.path} and {b.path} overlap")
    return WatchConfig(
        folders=folders,
        stability_window=_positive("stability_window", stability_window),
        rescan_interval=_positive("rescan_interval", rescan_interval),
        database_url=database_url,
        model_id=env.get("AIC_MODEL_ID") or None,
    )


def parse_config(document: Mapping[str, Any], env: Mapping[str, str] | None = None) -> WatchConfig:
    """A WatchConfig from a parsed TOML document; unknown keys are errors (a typo must not pass)."""
    unknown = set(document) - TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown settings {sorted(unknown)}; known: {sorted(TOP_KEYS)}")
    tables = document.get("folders")
    if not isinstance(tables, list) or not tables:
        raise ConfigError("the config needs at least one [[folders]] table")
    folders = []
    for table in tables:
        if not isinstance(table, dict):
            raise ConfigError("each [[folders]] entry must be a table")
        unknown = set(table) - FOLDER_KEYS
        missing = {"path", "ratio", "archive"} - set(table)
        if unknown or missing:
            raise ConfigError(
                f"folder {table.get('path', '?')}: unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        try:
            folders.append(make_folder(**table))
        except TypeError as error:  # e.g. path = 1: TOML's types are not checked by name
            raise ConfigError(f"folder {table['path']!r}: a setting has the wrong type ({error})") from None
    return make_config(
        folders,
        stability_window=document.get("stability_window", DEFAULT_STABILITY_WINDOW),
        rescan_interval=document.get("rescan_interval", DEFAULT_RESCAN_INTERVAL),
        database_url=document.get("database_url"),
        env=env,
    )


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> WatchConfig:
    """Read and check the TOML file at `path`."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config {path} is not valid TOML: {error}") from None
    return parse_config(document, env)
