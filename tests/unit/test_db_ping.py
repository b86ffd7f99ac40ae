"""The worker's engine pings only connections that sat idle: a killed one is replaced unseen."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from editqueue.db import make_engine


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(text("SELECT pg_backend_pid()")))


def _terminate(database_url: str, pid: int) -> None:
    admin = make_engine(database_url, pool_size=1)
    with admin.begin() as connection:
        assert connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def test_an_idle_connection_killed_by_the_server_is_replaced_at_checkout(
    database_url: str,
) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0, ping_idle_after=0.2)
    try:
        first = _backend_pid(engine)
        _terminate(database_url, first)
        time.sleep(0.3)  # idle past the threshold: the checkout pings, and reconnects
        assert _backend_pid(engine) != first
        time.sleep(0.3)
        # A pinged connection is handed out idle: its user may still switch to autocommit.
        with engine.connect() as connection:
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            assert autocommit.scalar(text("SELECT 1")) == 1
    finally:
        engine.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(database_url: str) -> None:
    # The trade the setting makes: no round trip per checkout, so a connection killed
    # within the threshold fails its next statement (and the pool replaces it after).
    engine = make_engine(database_url, pool_size=1, max_overflow=0, ping_idle_after=60.0)
    try:
        first = _backend_pid(engine)
        _terminate(database_url, first)
        with pytest.raises(OperationalError):
            _backend_pid(engine)
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()
