"""DriverStatement: hot statements sent to psycopg, with SQLAlchemy's types and errors."""

from __future__ import annotations

import enum

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from editqueue.db import DriverStatement, make_engine, make_session_factory


class Colour(enum.StrEnum):
    RED = "red"


@pytest.fixture
def scratch(database_url: str):
    engine = make_engine(database_url, ping_idle_after=2.0)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS driver_scratch"))
        connection.execute(
            text("CREATE TABLE driver_scratch (id text PRIMARY KEY, colour text, doc jsonb)")
        )
    yield engine, make_session_factory(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE driver_scratch"))
    engine.dispose()


INSERT = DriverStatement(
    "INSERT INTO driver_scratch (id, colour, doc) VALUES (:id, :colour, :doc::jsonb)"
    " RETURNING id, doc->>'n'",
    json=["doc"],
)


def test_values_go_in_as_sqlalchemy_sends_them(scratch) -> None:
    _, sessions = scratch
    with sessions() as session, session.begin():
        row = INSERT.execute(session, {"id": "a", "colour": Colour.RED, "doc": {"n": 50}})
        assert row.fetchone() == ("a", "50")
        INSERT.execute(session, {"id": "b", "colour": None, "doc": None})
    with sessions() as session:
        rows = session.execute(
            text("SELECT id, colour, jsonb_typeof(doc) FROM driver_scratch ORDER BY id")
        ).all()
    # An enum is stored as its value; None in a jsonb parameter is a JSON null, not NULL.
    assert [tuple(r) for r in rows] == [("a", "red", "object"), ("b", None, "null")]


def test_it_runs_inside_the_sessions_transaction(scratch) -> None:
    _, sessions = scratch
    with sessions() as session:
        INSERT.execute(session, {"id": "gone", "colour": "red", "doc": {}})
        session.rollback()
    with sessions() as session:
        assert session.scalar(text("SELECT count(*) FROM driver_scratch")) == 0


def test_errors_are_sqlalchemys(scratch) -> None:
    _, sessions = scratch
    with sessions() as session, session.begin():
        INSERT.execute(session, {"id": "dup", "colour": "red", "doc": {}})
    with sessions() as session:
        with pytest.raises(IntegrityError) as caught:
            INSERT.execute(session, {"id": "dup", "colour": "red", "doc": {"secret": "x"}})
        assert "secret" not in str(caught.value)  # parameters are not shown


def test_a_lost_connection_is_invalidated_and_the_next_one_works(scratch) -> None:
    engine, sessions = scratch
    with sessions() as session:
        pid = session.scalar(text("SELECT pg_backend_pid()"))
        with engine.begin() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(OperationalError) as caught:
            INSERT.execute(session, {"id": "lost", "colour": "red", "doc": {}})
        assert caught.value.connection_invalidated
    with sessions() as session, session.begin():
        INSERT.execute(session, {"id": "after", "colour": "red", "doc": {}})
        assert session.scalar(text("SELECT count(*) FROM driver_scratch")) == 1
