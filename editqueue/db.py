"""Engine and session factory; one naming convention for every constraint."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, cast

from sqlalchemy import CursorResult, MetaData, Result, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# Stable constraint names keep Alembic autogenerate and `alembic check` deterministic.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(
    url: str, *, pool_size: int = 5, max_overflow: int = 10, ping_idle_after: float | None = None
) -> Engine:
    """An engine that checks a pooled connection before use, so a restarted PostgreSQL is
    survived without a restart.

    By default every checkout pings. `ping_idle_after` pings only connections idle longer
    than that many seconds: for the worker, whose steps check out a connection several
    times a second, where the ping was a round trip per transaction. A connection used
    within that time of a PostgreSQL restart then fails its next statement instead; the
    pool drops every connection made before it, and the step's lease brings the job back.
    """
    engine = create_engine(
        url,
        pool_pre_ping=ping_idle_after is None,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )
    if ping_idle_after is not None:
        _ping_when_idle(engine, ping_idle_after)
    return engine


_CHECKED_IN = "editqueue.checked_in_at"


def _ping_when_idle(engine: Engine, seconds: float) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get(_CHECKED_IN)
        if idle_since is None or time.monotonic() - idle_since < seconds:
            return  # new, or used a moment ago
        try:
            dbapi_connection.execute("SELECT 1")
            # The ping opened a transaction; leave the connection idle, as the pool gave it.
            dbapi_connection.rollback()
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(str(exc)) from exc


def affected_rows(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched: `Session.execute` types its result as a plain
    `Result`, but for DML it is a `CursorResult`, which carries the count."""
    return cast(CursorResult[Any], result).rowcount or 0


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (rows are re-read explicitly)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on error."""
    with factory() as session, session.begin():
        yield session
