"""The broker `aic-admin run` brings along, and the private redis-server under it: no other local
user may reach either (a unix socket in a 0700 directory; a port only with a password)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from aic_worker.admin.embedded_broker import MAX_SOCKET_PATH, SOCKET_NAME, EmbeddedBroker, redis_server_binary
from aic_worker.admin.private_redis import PrivateRedis


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """pytest's tmp_path is itself too long for a socket's address."""
    directory = Path(tempfile.mkdtemp(prefix="aic-test-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def socket_of(url: str) -> Path:
    assert url.startswith("redis+socket://"), url
    return Path(url.removeprefix("redis+socket://"))


def tcp_listeners(pid: int) -> list[object]:
    return [c for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]


def assert_private(sock: Path) -> None:
    directory = sock.parent.stat()
    assert stat.S_IMODE(directory.st_mode) == 0o700 and directory.st_uid == os.getuid()
    assert stat.S_ISSOCK(sock.stat().st_mode) and not sock.stat().st_mode & 0o077


@pytest.mark.parametrize("long_home", [False, True])
def test_the_embedded_broker_is_a_unix_socket_in_a_private_directory_never_a_port(
    short_dir: Path, long_home: bool
) -> None:
    home = short_dir.joinpath(*["d" * 40] * 3) if long_home else short_dir / "home"
    home.mkdir(parents=True)
    assert (len(str(home / "broker" / SOCKET_NAME)) > MAX_SOCKET_PATH) == long_home
    broker = EmbeddedBroker(home)
    url = broker.start()
    try:
        sock = socket_of(url)
        assert_private(sock)
        assert len(str(sock)) <= MAX_SOCKET_PATH
        assert (sock.parent == home / "broker") != long_home
        assert (home / "broker" / "url").read_text() == url
        assert broker.server is not None and broker.server.process is not None
        assert tcp_listeners(broker.server.process.pid) == []
        with redis.Redis(unix_socket_path=str(sock)) as client:
            assert client.ping() and client.config_get("port") == {"port": "0"}
    finally:
        broker.stop()
    assert not sock.exists() and not (home / "broker" / "url").exists()
    assert sock.parent.exists() != long_home  # the private runtime directory goes with the broker


def test_a_private_redis_on_a_port_refuses_anyone_without_its_password(tmp_path: Path) -> None:
    server = PrivateRedis(shutil.which("redis-server") or redis_server_binary(), tmp_path)
    url = server.start()
    try:
        assert server.process is not None
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        password = url.split("//:", 1)[1].split("@", 1)[0]
        assert len(password) >= 32
        assert [c.laddr.ip for c in tcp_listeners(server.process.pid)] == ["127.0.0.1"]
        with redis.Redis(port=port) as stranger, pytest.raises(redis.AuthenticationError):
            stranger.config_set("dir", "/tmp")
        with redis.Redis.from_url(url) as owner:
            assert owner.ping()
        # Not in anyone's `ps`: the settings went in on stdin.
        assert password not in " ".join(psutil.Process(server.process.pid).cmdline())
    finally:
        server.stop()


def test_a_broker_killed_with_its_starter_leaves_no_runtime_directory_after_the_next_start(
    short_dir: Path,
) -> None:
    """kill -9 of `aic-admin run` takes its redis-server down (tied to the parent) but can't
    remove the private runtime directory: the next start for that AIC_HOME does."""
    home = short_dir.joinpath(*["d" * 40] * 3)
    home.mkdir(parents=True)
    first = EmbeddedBroker(home)
    old = socket_of(first.start()).parent
    assert first.server is not None and first.server.process is not None
    first.server.process.kill()  # what the kernel does to it once its starter is gone
    first.server.process.wait()
    assert old.exists()
    second = EmbeddedBroker(home)
    try:
        new = socket_of(second.start()).parent
        assert not old.exists() and new.exists() and new != old
    finally:
        second.stop()
    assert not new.exists() and not (home / "broker" / "socket_dir").exists()
