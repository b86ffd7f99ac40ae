"""Real PostgreSQL and Redis for the test suite: the machine's own when they run, else embedded.

Each test session gets its own database and its own Redis DB index, so sessions running
side by side (several developers' or helpers' runs, xdist workers) never see each other's
data. `EDITQUEUE_TEST_EMBEDDED=1` skips the machine's servers (and DATABASE_URL/REDIS_URL)
to exercise the path of a machine where neither is installed.
"""

from __future__ import annotations

import atexit
import functools
import os
import random
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

from editqueue.config import env_flag
from editqueue.standalone.embedded import EmbeddedPostgres, EmbeddedRedis

FORCE_EMBEDDED = "EDITQUEUE_TEST_EMBEDDED"
SYSTEM_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SYSTEM_REDIS = ("127.0.0.1", 6379)
# Claims of Redis DB indexes live in DB 0 so that a test's FLUSHDB cannot erase them;
# the TTL frees the index of a session that died without its atexit hooks.
_REDIS_CLAIM_KEY = "editqueue:test-db-claim:{}"
_REDIS_CLAIM_TTL = 12 * 3600


def _forced_embedded() -> bool:
    return env_flag(FORCE_EMBEDDED)


def _warn(message: str) -> None:
    print(f"tests/servers.py: {message}", file=sys.stderr)


# -- PostgreSQL --------------------------------------------------------------------------


@functools.cache
def postgres_url() -> str:
    """URL of a fresh database for this session (dropped at exit), on the first server found."""
    server = _postgres_server_url()
    name = f"eq_test_{os.getpid()}_{random.randrange(16**6):06x}"
    with psycopg.connect(_libpq(server), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    atexit.register(_drop_database, server, name)
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def _postgres_server_url() -> str:
    """A server URL: DATABASE_URL, else the machine's PostgreSQL, else an embedded one."""
    if not _forced_embedded():
        configured = os.environ.get("DATABASE_URL")
        if configured:
            return _with_scheme(configured, "postgresql+psycopg")
        if _postgres_answers(SYSTEM_POSTGRES_URL):
            return SYSTEM_POSTGRES_URL
    return _embedded_postgres_url()


def _postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(_libpq(url), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _embedded_postgres_url() -> str:
    # A short path under /tmp: the server's unix socket lives in it.
    root = Path(tempfile.mkdtemp(prefix="eq-test-pg-"))
    server = EmbeddedPostgres(root / "pgdata", database="postgres")
    # Registered before starting, so a half-started server is cleaned up too; atexit
    # runs in reverse order, so the session database is dropped before this stops.
    atexit.register(_stop_and_remove, server, root)
    return server.start()


def _stop_and_remove(server: EmbeddedPostgres | EmbeddedRedis, root: Path) -> None:
    try:
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _drop_database(server: str, name: str) -> None:
    try:
        with psycopg.connect(_libpq(server), autocommit=True, connect_timeout=5) as conn:
            # A connection left open by a leaked engine would block the DROP.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        _warn(f"could not drop test database {name}: {exc}")


def _libpq(url: str) -> str:
    """The libpq form of a SQLAlchemy URL (psycopg does not know `+psycopg`)."""
    return _with_scheme(url, "postgresql")


def _with_scheme(url: str, scheme: str) -> str:
    # String surgery rather than SQLAlchemy's URL rendering, which percent-encodes a
    # socket path (`host=%2Ftmp…`) and so breaks configparser-based consumers (Alembic).
    return scheme + url[url.index("://") :]


# -- Redis -------------------------------------------------------------------------------


@functools.cache
def redis_url() -> str:
    """REDIS_URL, else a claimed and flushed DB index of the machine's Redis, else embedded."""
    if not _forced_embedded():
        configured = os.environ.get("REDIS_URL")
        if configured:
            return configured
        index = _claim_system_redis_db()
        if index is not None:
            host, port = SYSTEM_REDIS
            return f"redis://{host}:{port}/{index}"
    root = Path(tempfile.mkdtemp(prefix="eq-test-redis-"))
    server = EmbeddedRedis(root / "redis")
    atexit.register(_stop_and_remove, server, root)
    return server.start()


def start_private_redis(tmpdir: str | Path) -> EmbeddedRedis:
    """An embedded Redis under `tmpdir` for tests that stop or restart it; caller stops it."""
    server = EmbeddedRedis(Path(tmpdir) / "redis")
    # A safety net only: a test that forgets stop() must not leave a server behind.
    atexit.register(server.stop)
    server.start()
    return server


def _claim_system_redis_db() -> int | None:
    """Claim a free DB index 1–15 of the machine's Redis, flush it, and return it."""
    host, port = SYSTEM_REDIS
    # No retries: redis-py's default back-off would spend seconds on a closed port.
    admin = redis.Redis(
        host=host,
        port=port,
        socket_timeout=2,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        admin.ping()
        owner = f"{socket.gethostname()}:{os.getpid()}"
        # Random order: concurrent sessions rarely even contend for the same index.
        for index in random.sample(range(1, 16), 15):
            key = _REDIS_CLAIM_KEY.format(index)
            if admin.set(key, owner, nx=True, ex=_REDIS_CLAIM_TTL):
                break
        else:
            _warn("every Redis DB index 1-15 is claimed; using an embedded Redis")
            return None
        with redis.Redis(host=host, port=port, db=index) as db:
            db.flushdb()
    except redis.RedisError:
        return None
    finally:
        admin.close()
    atexit.register(_release_redis_db, key, owner)
    return index


def _release_redis_db(key: str, owner: str) -> None:
    host, port = SYSTEM_REDIS
    try:
        with redis.Redis(host=host, port=port, socket_timeout=2) as admin:
            # Only our own claim: after a TTL expiry the index may be someone else's.
            if admin.get(key) == owner.encode():
                admin.delete(key)
    except redis.RedisError as exc:
        _warn(f"could not release {key}: {exc}")
