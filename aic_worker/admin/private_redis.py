"""A redis-server of our own: on a unix socket or a localhost port, nothing kept on disk.

`aic-admin run` brings one along as its broker (embedded_broker.py); the tests start one so
that they can empty it, or take it down and bring it back, without touching a shared Redis.
Started again after stop(), it listens where it did before.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from aic_worker.admin.child_process import die_with_parent


class RedisStartError(RuntimeError):
    """The redis-server exited, or did not answer in time."""


def free_port() -> int:
    """A localhost TCP port that nothing listens on (at the moment of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    def __init__(
        self,
        binary: str,
        directory: Path,
        *,
        unix_socket: Path | None = None,
        log: Path | None = None,
        tied_to_parent: bool = False,
    ) -> None:
        """A server whose working directory is `directory`, listening on `unix_socket` (mode 0700)
        when given, else on a free localhost port; logging to `log` when given. `tied_to_parent`:
        in a session of its own, and sent SIGTERM when this process dies, even by kill -9.
        """
        self.binary, self.directory, self.log = binary, directory, log
        self.tied_to_parent = tied_to_parent
        self.process: subprocess.Popen[bytes] | None = None
        self._arguments = ["--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(directory)]
        if log is not None:
            self._arguments += ["--logfile", str(log)]
        if unix_socket is not None:
            self._arguments += ["--port", "0", "--unixsocket", str(unix_socket), "--unixsocketperm", "700"]
            self.url = f"redis+socket://{unix_socket}"
            self._client = {"unix_socket_path": str(unix_socket)}
        else:
            port = free_port()
            self._arguments += ["--port", str(port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{port}/0"
            self._client = {"port": port}

    def client(self) -> redis.Redis:
        return redis.Redis(**self._client)

    def start(self, timeout: float = 20.0) -> str:
        """Start the server and wait until it answers; returns its URL. RedisStartError if it doesn't."""
        self.process = subprocess.Popen(
            [self.binary, *self._arguments],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=self.tied_to_parent,
            preexec_fn=die_with_parent if self.tied_to_parent else None,
        )
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                try:
                    if client.ping():
                        return self.url
                except redis.RedisError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RedisStartError(f"redis-server ({self.binary}) did not start")
                time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, and SIGKILL after `timeout`; nothing to do when it is not running."""
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
