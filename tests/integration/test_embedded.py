"""Embedded PostgreSQL and Redis: real servers, data kept across stops, crashes and restarts."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from editqueue.standalone.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedRedis


def _gone(pid: int) -> bool:
    """True when `pid` no longer runs (zombies count as gone: they serve nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        assert time.monotonic() < deadline, f"pid {pid} still running"
        time.sleep(0.05)


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


def _scalar(url: str, query: str) -> object:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A PGDATA path whose server is stopped (and files removed) after the test."""
    # Not under tmp_path: as root the server runs as another user that must traverse
    # the parents, and any pytest session starting meanwhile resets /tmp/pytest-of-root
    # to mode 0700, which cuts a running server off from its own files.
    root = Path(tempfile.mkdtemp(prefix="eq-test-pg-"))
    yield root / "pg"
    EmbeddedPostgres(root / "pg").stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def redis_dir(tmp_path: Path) -> Path:
    return tmp_path / "redis"


@pytest.fixture
def new_redis(redis_dir: Path) -> Iterator[Callable[..., EmbeddedRedis]]:
    """Make EmbeddedRedis objects on `redis_dir`; each is stopped after the test."""
    made: list[EmbeddedRedis] = []

    def make(port: int | None = None) -> EmbeddedRedis:
        made.append(EmbeddedRedis(redis_dir, port=port))
        return made[-1]

    yield make
    for server in made:
        server.stop()


# -- PostgreSQL --------------------------------------------------------------------------


def test_postgres_rows_survive_a_stop_and_start(pg_dir: Path) -> None:
    url = EmbeddedPostgres(pg_dir).start()
    assert url == f"postgresql+psycopg://postgres:@/editqueue?host={pg_dir.resolve()}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE notes (body text)"))
        conn.execute(sa.text("INSERT INTO notes VALUES ('kept')"))
    engine.dispose()

    # A second handle, as a second process would make: same server, its own database.
    pid = _postmaster_pid(pg_dir)
    other = EmbeddedPostgres(pg_dir, database="other").start()
    assert _postmaster_pid(pg_dir) == pid
    assert _scalar(other, "SELECT current_database()") == "other"

    EmbeddedPostgres(pg_dir).stop()
    assert not (pg_dir / "postmaster.pid").exists()
    again = EmbeddedPostgres(pg_dir)
    assert again.start() == url
    assert _postmaster_pid(pg_dir) != pid
    assert _scalar(again.url, "SELECT body FROM notes") == "kept"


def test_postgres_restarts_after_a_crash_left_a_stale_pidfile(pg_dir: Path) -> None:
    pg = EmbeddedPostgres(pg_dir)
    pg.start()
    pid = _postmaster_pid(pg_dir)
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert (pg_dir / "postmaster.pid").exists()

    assert _scalar(pg.start(), "SELECT 1") == 1
    assert _postmaster_pid(pg_dir) != pid


def test_postgres_url_needs_a_start() -> None:
    with pytest.raises(EmbeddedError):
        _ = EmbeddedPostgres(Path("/nonexistent/pg")).url


# -- Redis -------------------------------------------------------------------------------


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


def _squat(port: int) -> socket.socket:
    """A listener holding `port` (SO_REUSEADDR: the port may sit in TIME_WAIT)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_redis_list_survives_a_stop_and_start_through_the_aof(
    new_redis: Callable[..., EmbeddedRedis], redis_dir: Path
) -> None:
    server = new_redis()
    url = server.start()
    assert url == f"redis://127.0.0.1:{server.port}/0"
    with _client(url) as client:
        client.lpush("celery", "m1", "m2")
    server.stop()
    assert server.pid is None

    with _client(new_redis().start()) as client:
        assert client.lrange("celery", 0, -1) == [b"m2", b"m1"]
    assert (redis_dir / "appendonly.aof").exists()
    assert (redis_dir / "redis.log").exists()
    config = (redis_dir / "redis.conf").read_text()
    for line in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
        assert line in config


def test_redis_restart_keeps_port_and_data(new_redis: Callable[..., EmbeddedRedis]) -> None:
    server = new_redis()
    url = server.start()
    pid = server.pid
    assert pid is not None
    with _client(url) as client:
        client.set("k", "v")
    assert server.restart() == url
    assert server.pid != pid
    _wait_gone(pid)
    with _client(url) as client:
        assert client.get("k") == b"v"
    assert server.socket_path is not None and server.socket_path.is_socket()


def test_redis_reuses_its_saved_port_only_while_free(
    new_redis: Callable[..., EmbeddedRedis], redis_dir: Path
) -> None:
    first = new_redis()
    first.start()
    port = first.port
    assert port is not None
    first.stop()
    assert (redis_dir / EmbeddedRedis.PORT_FILE).read_text().strip() == str(port)

    second = new_redis()
    second.start()
    assert second.port == port
    second.stop()

    with _squat(port):
        third = new_redis()
        third.start()
        assert third.port != port
        assert (redis_dir / EmbeddedRedis.PORT_FILE).read_text().strip() == str(third.port)


def test_redis_takes_over_a_server_left_running_on_its_dir(
    new_redis: Callable[..., EmbeddedRedis],
) -> None:
    orphan = new_redis()
    orphan.start()
    orphan_pid = orphan.pid
    assert orphan_pid is not None
    with _client(orphan.url) as client:
        client.set("k", "v")

    # As after a crash of the owner: the old server must go, its data must not.
    server = new_redis()
    with _client(server.start()) as client:
        _wait_gone(orphan_pid)
        assert server.pid != orphan_pid
        assert client.get("k") == b"v"


def test_redis_on_a_taken_fixed_port_fails_with_the_log(
    new_redis: Callable[..., EmbeddedRedis],
) -> None:
    with _squat(0) as squatter:
        server = new_redis(port=squatter.getsockname()[1])
        with pytest.raises(EmbeddedError, match="already in use"):
            server.start()
    assert server.pid is None
