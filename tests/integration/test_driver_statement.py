"""DriverStatement: hot statements sent to psycopg, with SQLAlchemy's types and errors;
loaded_instance: their rows as model instances."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from editqueue.db import (
    DriverStatement,
    autocommit,
    loaded_instance,
    make_engine,
    make_session_factory,
    transaction,
)
from editqueue.ids import new_id
from editqueue.jobs import states as jobs
from editqueue.jobs.intake import NewJob
from editqueue.models import Job, JobEvent
from editqueue.tenants import create_tenant


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


def test_jsonb_takes_what_the_standard_encoder_takes(scratch) -> None:
    # orjson encodes jsonb parameters; what it refuses goes through json.dumps as before.
    _, sessions = scratch
    documents = {"big": {"n": 2**70}, "keys": {1: "one"}, "text": {"t": "snow ☃ \u2028"}}
    with sessions() as session, session.begin():
        for key, doc in documents.items():
            INSERT.execute(session, {"id": key, "colour": None, "doc": doc})
    with sessions() as session:
        stored = dict(session.execute(text("SELECT id, doc FROM driver_scratch")).all())
    assert stored == {"big": {"n": 2**70}, "keys": {"1": "one"}, "text": {"t": "snow ☃ \u2028"}}


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


# -- loaded_instance: a RETURNING row as a model instance ----------------------------------


def test_a_loaded_instance_holds_what_the_orm_loads(sessions, database_url: str) -> None:
    with transaction(sessions) as session:
        tenant_id = create_tenant(session, new_id("t")).id
        job = Job(
            id=new_id("job"),
            tenant_id=tenant_id,
            model="seededit-3.0",
            prompt="p",
            params={"seed": 7},
            inputs=[{"url": "http://x/a.png"}],
            meta={"team": "a"},
            cost_estimate=Decimal("0.030000"),
            deadline_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        )
        session.add(job)
    returning = DriverStatement("UPDATE jobs SET poll_count = 3 WHERE id = :id RETURNING *")
    with transaction(sessions) as session:
        loaded = loaded_instance(Job, returning.execute(session, {"id": job.id}))
        missing = loaded_instance(Job, returning.execute(session, {"id": "job_none"}))
    with sessions() as session:
        orm = session.get(Job, job.id)
    assert loaded is not None and orm is not None and missing is None
    columns = [attribute.key for attribute in Job.__mapper__.column_attrs]
    assert {k: getattr(loaded, k) for k in columns} == {k: getattr(orm, k) for k in columns}
    assert loaded.meta == {"team": "a"} and loaded.poll_count == 3  # `metadata` is `meta`
    # Committed state with no change history, in no session: a change is not written.
    state = inspect(loaded)
    assert state.transient and not state.attrs.poll_count.history.has_changes()
    loaded.poll_count = 9
    with transaction(sessions) as session:
        session.execute(text("SELECT 1"))
    with sessions() as session:
        assert session.scalar(select(Job.poll_count).where(Job.id == job.id)) == 3


# -- insert_job: the Job it answers with is the row the database stored --------------------


@pytest.mark.parametrize("on", ["session", "autocommit connection"])
def test_insert_job_answers_the_stored_row(sessions, on: str) -> None:
    with transaction(sessions) as session:
        tenant_id = create_tenant(session, new_id("t")).id
    new = NewJob(
        model="seededit-3.0",
        prompt="p",
        params={"seed": 7},
        inputs=[{"source": "url", "url": "http://x/a.png"}],
        provider_pin=None,
        provider_options={},
        webhook_url="https://hooks.example/a",
        webhook_events=["job.succeeded"],
        metadata={"team": "a"},
        deadline_seconds=600,
        id=new_id("job"),
        cost_estimate=Decimal("0.030000"),
    )
    if on == "session":
        with transaction(sessions) as session:
            created = jobs.insert_job(session, tenant_id, new, idempotency_key="k")
    else:
        with autocommit(sessions) as connection:
            created = jobs.insert_job(connection, tenant_id, new)
    with sessions() as session:
        stored = session.get(Job, new.id)
        event = session.scalars(select(JobEvent).where(JobEvent.job_id == new.id)).one()
    assert stored is not None and not created.replayed
    columns = [attribute.key for attribute in Job.__mapper__.column_attrs]
    assert {k: getattr(created.job, k) for k in columns} == {k: getattr(stored, k) for k in columns}
    assert stored.status == "queued" and stored.outputs == [] and stored.attempts == 0
    assert (event.type, event.terminal, event.tenant_id) == ("job.created", False, tenant_id)
    assert event.at == stored.created_at == stored.updated_at
