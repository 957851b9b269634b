"""A redis-server of our own: on a unix socket or a localhost port, nothing kept on disk.

On a port it always wants a password (random for each PrivateRedis, carried in its URL):
any local user can connect to 127.0.0.1, and an open Redis lets them `CONFIG SET dir` and
load modules as us. On a unix socket the socket's mode (0700) and its directory keep others out.

`aic-admin run` brings one along as its broker (embedded_broker.py); the tests start one so
that they can empty it, or take it down and bring it back, without touching a shared Redis.
Started again after stop(), it listens where it did before.
"""

from __future__ import annotations

import secrets
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
        when given, else on a free localhost port with a random password; logging to `log` when
        given. `tied_to_parent`: in a session of its own, and sent SIGTERM when this process
        dies, even by kill -9.
        """
        self.binary, self.directory, self.log = binary, directory, log
        self.tied_to_parent = tied_to_parent
        self.process: subprocess.Popen[bytes] | None = None
        self._settings: list[tuple[str, str]] = [("save", ""), ("appendonly", "no"), ("daemonize", "no"),
                                                 ("dir", str(directory))]
        if log is not None:
            self._settings.append(("logfile", str(log)))
        if unix_socket is not None:
            self._settings += [("port", "0"), ("unixsocket", str(unix_socket)), ("unixsocketperm", "700")]
            self.url = f"redis+socket://{unix_socket}"
            self._client: dict[str, object] = {"unix_socket_path": str(unix_socket)}
        else:
            port, password = free_port(), secrets.token_hex(24)
            self._settings += [("port", str(port)), ("bind", "127.0.0.1"), ("requirepass", password)]
            self.url = f"redis://:{password}@127.0.0.1:{port}/0"
            self._client = {"port": port, "password": password}

    def _config(self) -> bytes:
        """The settings as a redis.conf read from stdin: a password on the command line would be
        in every local user's `ps`."""
        def quoted(value: str) -> str:
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

        return "".join(f"{name} {quoted(value)}\n" for name, value in self._settings).encode()

    def client(self) -> redis.Redis:
        return redis.Redis(**self._client)

    def start(self, timeout: float = 20.0) -> str:
        """Start the server and wait until it answers; returns its URL. RedisStartError if it doesn't."""
        self.process = subprocess.Popen(
            [self.binary, "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=self.tied_to_parent,
            preexec_fn=die_with_parent if self.tied_to_parent else None,
        )
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(self._config())
            self.process.stdin.close()
        except BrokenPipeError:  # it exited at once: said below
            pass
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
