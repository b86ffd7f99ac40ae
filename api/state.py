"""Per-app services (engine, sessions, storage, broker), built once by the app factory."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from flask import current_app, g
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from editqueue.config import Settings
from editqueue.infra.outbox import Publisher
from editqueue.infra.storage import Storage


@dataclasses.dataclass
class Services:
    """What request handlers use; stored on `app.extensions["editqueue"]`."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    publisher: Publisher
    broker_ping: Callable[[], None]  # raises when the broker is unreachable
    ring_dispatcher: Callable[[], None]  # a debounced hint; never raises


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["editqueue"]


def db() -> Session:
    """The request's database session (opened on first use, closed at teardown)."""
    if "db_session" not in g:
        g.db_session = services().sessions()
    return g.db_session


def db_autocommit() -> Connection:
    """The request's autocommit connection (closed at teardown), for a handler whose every
    write is one self-contained statement: no BEGIN and COMMIT round trips around it, and
    none of a session's bookkeeping (~100 µs of CPU, 7 % of a `POST /v1/jobs`)."""
    if "db_connection" not in g:
        connection = services().engine.connect()
        g.db_connection = connection.execution_options(isolation_level="AUTOCOMMIT")
    return g.db_connection


def close_db(_exc: BaseException | None = None) -> None:
    """Teardown: roll back anything uncommitted and return the connections."""
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
    connection = g.pop("db_connection", None)
    if connection is not None:
        connection.close()
