"""Engine and session factory; one naming convention for every constraint."""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar, cast

import orjson
import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import CursorResult, MetaData, Result, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

_Model = TypeVar("_Model", bound="Base")

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


def dump_json(value: Any) -> bytes | str:
    """A jsonb value's text: orjson's, or the standard encoder's for what orjson refuses
    (an int past 64 bits, a key that is not a string). The standard one was most of the
    driver's parameter work on a job row."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value)


# For `make_engine(ping_idle_after=...)` in the API and the worker: a pooled connection
# idle longer than this is pinged before use.
PING_IDLE_SECONDS = 2.0


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
        # For the ORM's jsonb and DriverStatement's alike: both go through the adapters of
        # the engine's connections. Reading stays with the standard decoder: orjson's turns
        # an int past 64 bits into a float.
        json_serializer=dump_json,
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


@contextlib.contextmanager
def autocommit(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A connection of the factory's engine in autocommit, for one self-contained statement
    (a WITH of several writes is one): no session around it, no BEGIN and COMMIT."""
    with factory.kw["bind"].connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


# -- statements sent to psycopg directly -------------------------------------------------------

# `:name` placeholders, not `::type` casts.
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class DriverStatement:
    """A hot statement sent to psycopg on the session's connection, inside its transaction.

    SQLAlchemy's execution of a text statement costs about 2.5 times the driver's own work
    for a row of 30 parameters (bind processing, result metadata); for the one INSERT of
    `POST /v1/jobs` that was a sixth of the request. Written with `:name` placeholders like
    `text()`. The parameters named in `json` are sent as jsonb, None included (a JSON
    null, as SQLAlchemy's JSONB type sends it); those in `json_or_null` too, but None is
    SQL NULL there (`JSONB(none_as_null=True)`). Enums go as their values. Errors come out
    as SQLAlchemy's, so callers and error handlers see what `Session.execute` raises.
    """

    def __init__(
        self, sql: str, *, json: Iterable[str] = (), json_or_null: Iterable[str] = ()
    ) -> None:
        self.sql = sql
        self._driver_sql = _PLACEHOLDER.sub(r"%(\1)s", sql.replace("%", "%%"))
        self._json = frozenset(json)
        self._json_or_null = frozenset(json_or_null)

    def execute(self, on: Session | Connection, params: Mapping[str, Any]) -> psycopg.Cursor[Any]:
        """Run it with `params` on a session's connection (or on a connection) and return
        the driver's cursor (rows as tuples)."""
        connection = on.connection() if isinstance(on, Session) else on
        driver = connection.connection.dbapi_connection
        assert driver is not None  # a checked-out connection always has one
        values = {name: self._adapt(name, value) for name, value in params.items()}
        try:
            return cast(psycopg.Connection[Any], driver).execute(self._driver_sql, values)
        except psycopg.Error as exc:
            lost = connection.dialect.is_disconnect(exc, driver, None)  # type: ignore[arg-type]
            if lost:
                # As SQLAlchemy does on a disconnect: this connection goes, and so does
                # every other one opened before the database went away.
                connection.invalidate(exc)
                connection.engine.dispose(close=False)
            raise DBAPIError.instance(
                self.sql,
                None,
                exc,
                psycopg.Error,
                hide_parameters=True,
                connection_invalidated=lost,
            ) from exc

    def _adapt(self, name: str, value: Any) -> Any:
        if name in self._json or (value is not None and name in self._json_or_null):
            return Jsonb(value)
        if isinstance(value, enum.Enum):
            return value.value
        return value


@functools.cache
def _attribute_names(model: type[Base]) -> dict[str, str]:
    """Column name → mapped attribute name (`metadata` is `Job.meta`, say)."""
    return {
        column.name: attribute.key
        for attribute in model.__mapper__.column_attrs
        for column in attribute.columns
    }


def loaded_instance(model: type[_Model], cursor: psycopg.Cursor[Any]) -> _Model | None:
    """The cursor's next row (a `RETURNING *`, say) as a `model` instance; None if no row.

    Filled the way the ORM's loader fills one (the values as committed state, no change
    history), for a small fraction of the loader's cost, and attached to no session: a
    change to it is not flushed, so the caller writes what it changes itself.
    """
    row = cursor.fetchone()
    if row is None:
        return None
    assert cursor.description is not None  # a statement that returned a row has columns
    return instance_from(model, zip((c.name for c in cursor.description), row, strict=True))


def instance_from(model: type[_Model], row: Iterable[tuple[str, Any]]) -> _Model:
    """A `model` instance holding `row` ((column name, value) pairs) as its committed state.

    As `loaded_instance`: in no session, and a change to it is not flushed.
    """
    names = _attribute_names(model)
    instance = cast(_Model, model.__mapper__.class_manager.new_instance())
    instance.__dict__.update((names[name], value) for name, value in row)
    return instance
