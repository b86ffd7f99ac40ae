"""Job timers: the sweep leases steps due before its next run and says how long until each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from editqueue import jobs
from editqueue.db import make_engine, make_session_factory, transaction
from editqueue.ids import new_id
from editqueue.models import Job
from editqueue.tenants import create_tenant
from tests.integration.test_webhook_engine import _running_job


@pytest.fixture
def factory(private_database: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(private_database)
    yield make_session_factory(engine)
    engine.dispose()


def _add_job_due_in(session: Session, tenant_id: str, due_in: float) -> str:
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=due_in)
    job = _running_job(new_id("job"), tenant_id, stage="wait", next_poll_at=due)
    session.add(job)
    return job.id


def test_sweep_leases_steps_due_within_the_look_ahead_with_their_wait(
    factory: sessionmaker[Session],
) -> None:
    with transaction(factory) as session:
        tenant = create_tenant(session, new_id("t"))
        overdue = _add_job_due_in(session, tenant.id, -3.0)
        soon = _add_job_due_in(session, tenant.id, 0.8)
        later = _add_job_due_in(session, tenant.id, 5.0)
    with transaction(factory) as session:
        due = {
            step.job_id: step
            for step in jobs.sweep_due(session, limit=10, lease_seconds=60, ahead=1.25)
        }
    assert set(due) == {overdue, soon}
    assert due[overdue].wait == 0
    assert 0.3 < due[soon].wait <= 0.8
    with factory() as session:
        rows = session.execute(select(Job.id, Job.lease_id).where(Job.tenant_id == tenant.id))
        leases = {job_id: lease for job_id, lease in rows}
    assert leases[soon] == due[soon].lease_id and leases[later] is None
    # Leased for the lease period: the next sweep does not hand the same steps out again.
    with transaction(factory) as session:
        assert jobs.sweep_due(session, limit=10, lease_seconds=60, ahead=1.25) == []
