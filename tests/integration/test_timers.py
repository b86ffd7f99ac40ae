"""Job timers: the sweep leases steps due before its next run and says how long until each;
deadlines fire on time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from editqueue.db import make_engine, make_session_factory, transaction
from editqueue.ids import new_id
from editqueue.jobs import states as jobs
from editqueue.models import Job, Tenant
from editqueue.tenants import create_tenant
from tests.conftest import TenantClient, data_url, make_tenant, png_bytes
from tests.integration.test_webhook_engine import _running_job
from tests.stack import Stack


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


def test_deadlines_due_within_the_look_ahead_are_listed_with_their_wait(
    factory: sessionmaker[Session],
) -> None:
    with transaction(factory) as session:
        tenant = create_tenant(session, new_id("t"))
        ids = {}
        # Seconds apart, so a loaded machine's pause between insert and read cannot move
        # "soon" past its deadline before it is listed.
        for name, due_in in (("passed", -2.0), ("soon", 4.0), ("later", 20.0)):
            job = _running_job(new_id("job"), tenant.id)
            job.deadline_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=due_in)
            session.add(job)
            ids[name] = job.id
    with factory() as session:
        due = {d.job_id: d.wait for d in jobs.due_deadlines(session, ahead=10.0)}
    assert set(due) == {ids["passed"], ids["soon"]}
    assert due[ids["passed"]] == 0
    assert 1.0 < due[ids["soon"]] <= 4.0


def _late_by(job: dict) -> float:
    """Seconds between the job's deadline and its end."""
    parse = dt.datetime.fromisoformat
    return (parse(job["completed_at"]) - parse(job["deadline_at"])).total_seconds()


def test_deadlines_fire_within_a_second_for_running_and_queued_jobs(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    # A task whose state the vendor never manages to report keeps the job running ...
    stack.sandbox_fault("kie", "poll", "server_error", count=500, status=503)
    image = data_url(png_bytes())
    running = tenant.create_job(
        model="seedream-4.0-edit", prompt="late", image=image, provider="kie", deadline_seconds=10
    )
    # ... and a tenant allowed no running job keeps its job queued.
    stuck = make_tenant(sessions, stack.api_url)
    with transaction(sessions) as session:
        session.execute(update(Tenant).where(Tenant.id == stuck.id).values(max_running_jobs=0))
    queued = stuck.create_job(model="seededit-3.0", prompt="late", image=image, deadline_seconds=10)
    try:
        ended = [tenant.wait_job(running["id"], timeout=20), stuck.wait_job(queued["id"], 20)]
    finally:
        stuck.client.close()
    assert ended[0]["started_at"] and not ended[1]["started_at"]
    for job in ended:
        assert (job["status"], job["error"]["code"]) == ("failed", "timeout"), job
        assert 0 <= _late_by(job) < 1.0, job
