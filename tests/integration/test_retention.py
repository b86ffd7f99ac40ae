"""Retention on the real database: old ended jobs go with everything hanging off them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from ulid import ULID

from editqueue.ids import new_id
from editqueue.infra.storage import MemoryStorage
from editqueue.jobs.retention import Purged, run_retention
from editqueue.models import Batch, Delivery, DeliveryAttempt, Job, JobEvent, Tenant, TenantEvent
from editqueue.tenants import create_tenant
from tests.conftest import editqueue_cli

NOW = dt.datetime.now(dt.UTC)
OLD = NOW - dt.timedelta(days=40)
RECENT = NOW - dt.timedelta(days=2)


def _id(prefix: str, moment: dt.datetime) -> str:
    """An id minted at `moment`, as the API would have minted it then."""
    return f"{prefix}_{ULID.from_timestamp(moment.timestamp())}"


@dataclass
class World:
    """The database session factory and the storage the jobs' objects live in."""

    sessions: sessionmaker[Session]
    storage: MemoryStorage

    def tenant(self, retention_days: int | None) -> str:
        with self.sessions() as session, session.begin():
            tenant = create_tenant(session, new_id("retention"))
            tenant.retention_days = retention_days
            return tenant.id

    def job(
        self,
        tenant_id: str,
        created: dt.datetime,
        status: str = "succeeded",
        *,
        delivery_state: str | None = None,
        batch_id: str | None = None,
    ) -> str:
        """A job with an uploaded input, an output, two events and optionally a delivery."""
        job_id = _id("job", created)
        keys = [f"{tenant_id}/{job_id}/in/0.png", f"{tenant_id}/{job_id}/out/0.png"]
        for key in keys:
            self.storage.put(key, b"png", "image/png")
        with self.sessions() as session, session.begin():
            session.add(
                Job(
                    id=job_id,
                    tenant_id=tenant_id,
                    batch_id=batch_id,
                    status=status,
                    model="seededit-3.0",
                    prompt="p",
                    inputs=[{"source": "upload", "key": keys[0]}],
                    outputs=[{"index": 0, "key": keys[1]}],
                    deadline_at=created + dt.timedelta(minutes=10),
                    created_at=created,
                )
            )
            session.flush()
            for kind in ("job.created", f"job.{status}"):
                session.add(
                    JobEvent(id=_id("evt", created), job_id=job_id, tenant_id=tenant_id, type=kind)
                )
        if delivery_state:
            # Made when the job ended, which may be long after it was created.
            self.delivery(
                tenant_id, NOW, delivery_state, job_id=job_id, event=f"job.{status}", code=500
            )
        return job_id

    def delivery(
        self,
        tenant_id: str,
        created: dt.datetime,
        state: str,
        *,
        job_id: str | None = None,
        event: str = "batch.completed",
        code: int = 200,
    ) -> str:
        """A delivery (a job's, or a tenant event's without `job_id`) with one attempt."""
        delivery_id = _id("dlv", created)
        with self.sessions() as session, session.begin():
            session.add(
                Delivery(
                    id=delivery_id,
                    tenant_id=tenant_id,
                    job_id=job_id,
                    event_id=_id("evt", created),
                    event_type=event,
                    url="https://hooks.example.com/x",
                    payload="{}",
                    state=state,
                    created_at=created,
                )
            )
            session.flush()
            session.add(DeliveryAttempt(delivery_id=delivery_id, attempt=1, status_code=code))
        return delivery_id

    def batch(self, tenant_id: str, created: dt.datetime) -> str:
        batch_id = _id("bat", created)
        with self.sessions() as session, session.begin():
            session.add(Batch(id=batch_id, tenant_id=tenant_id, total=1, created_at=created))
        return batch_id

    def jobs_of(self, tenant_id: str) -> set[str]:
        with self.sessions() as session:
            return set(session.scalars(select(Job.id).where(Job.tenant_id == tenant_id)))

    def count(self, model: type, **where: str) -> int:
        with self.sessions() as session:
            query = select(func.count()).select_from(model)
            for name, value in where.items():
                query = query.where(getattr(model, name) == value)
            return session.scalar(query) or 0

    def has_objects(self, tenant_id: str, job_id: str) -> bool:
        prefix = f"{tenant_id}/{job_id}/"
        return any(key.startswith(prefix) for key in self.storage.objects)


@pytest.fixture
def world(sessions: sessionmaker[Session]) -> Iterator[World]:
    yield World(sessions, MemoryStorage())
    # Leave no tenant with a retention behind for other tests' runs.
    with sessions() as session, session.begin():
        for tenant in session.scalars(select(Tenant).where(Tenant.name.like("retention_%"))):
            session.delete(tenant)


def _run(world: World, **kwargs: Any) -> Purged:
    return run_retention(world.sessions, world.storage, now=NOW, **kwargs)


def test_old_ended_jobs_go_with_their_events_deliveries_and_objects(world: World) -> None:
    tenant = world.tenant(retention_days=30)
    gone = [
        world.job(tenant, OLD, "succeeded", delivery_state="succeeded"),
        world.job(tenant, OLD, "failed", delivery_state="failed"),
        world.job(tenant, OLD, "canceled"),
    ]
    live = world.job(tenant, OLD, "running")
    recent = world.job(tenant, RECENT, "succeeded")

    purged = _run(world, default_days=None)

    assert world.jobs_of(tenant) == {live, recent}
    assert purged.jobs == 3
    assert purged.objects == 6
    for job_id in gone:
        assert world.count(JobEvent, job_id=job_id) == 0
        assert world.count(Delivery, job_id=job_id) == 0
        assert not world.has_objects(tenant, job_id)
    # Delivery attempts go by cascade with their deliveries: none is left without one.
    with world.sessions() as session:
        orphans = session.scalar(
            select(func.count())
            .select_from(DeliveryAttempt)
            .outerjoin(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
            .where(Delivery.id.is_(None))
        )
    assert orphans == 0
    for job_id in (live, recent):
        assert world.count(JobEvent, job_id=job_id) == 2
        assert world.has_objects(tenant, job_id)


def test_other_tenants_and_the_default_keep_forever(world: World) -> None:
    limited = world.tenant(retention_days=30)
    forever = world.tenant(retention_days=None)
    mine = world.job(limited, OLD)
    theirs = world.job(forever, OLD)

    _run(world, default_days=None)

    assert world.jobs_of(limited) == set()
    assert world.jobs_of(forever) == {theirs}
    assert world.has_objects(forever, theirs)
    assert not world.has_objects(limited, mine)


def test_the_deployment_default_applies_where_the_tenant_sets_none(world: World) -> None:
    defaulted = world.tenant(retention_days=None)
    longer = world.tenant(retention_days=60)
    world.job(defaulted, OLD)
    kept = world.job(longer, OLD)  # 40 days old: inside its own 60

    _run(world, default_days=10)

    assert world.jobs_of(defaulted) == set()
    assert world.jobs_of(longer) == {kept}


def test_deletes_in_batches_of_the_given_size(world: World) -> None:
    tenant = world.tenant(retention_days=30)
    for offset in range(7):
        world.job(tenant, OLD - dt.timedelta(minutes=offset))

    purged = _run(world, default_days=None, batch_size=3)

    assert purged.job_batches == [3, 3, 1]
    assert world.jobs_of(tenant) == set()


def test_a_job_with_a_pending_delivery_waits_for_it(world: World) -> None:
    tenant = world.tenant(retention_days=30)
    pending = world.job(tenant, OLD, delivery_state="pending")

    _run(world, default_days=None)

    assert world.jobs_of(tenant) == {pending}
    assert world.has_objects(tenant, pending)


def test_a_storage_failure_keeps_the_row_until_storage_answers(world: World) -> None:
    tenant = world.tenant(retention_days=30)
    job_id = world.job(tenant, OLD)
    world.storage.fail("delete")

    purged = _run(world, default_days=None)

    assert purged.kept_for_storage == 1
    assert world.jobs_of(tenant) == {job_id}
    world.storage.fail("delete", times=0)
    _run(world, default_days=None)
    assert world.jobs_of(tenant) == set()
    assert not world.has_objects(tenant, job_id)


def test_a_dry_run_counts_and_deletes_nothing(world: World) -> None:
    tenant = world.tenant(retention_days=30)
    job_id = world.job(tenant, OLD)

    purged = _run(world, default_days=None, dry_run=True)

    assert (purged.jobs, purged.objects) == (1, 2)
    assert world.jobs_of(tenant) == {job_id}
    assert world.has_objects(tenant, job_id)


def test_old_batches_go_once_their_jobs_are_gone(world: World) -> None:
    tenant = world.tenant(retention_days=30)
    emptied = world.batch(tenant, OLD)
    world.job(tenant, OLD, batch_id=emptied)
    still_used = world.batch(tenant, OLD)
    world.job(tenant, OLD, "running", batch_id=still_used)
    with world.sessions() as session, session.begin():
        session.add(
            TenantEvent(id=_id("evt", OLD), tenant_id=tenant, type="batch.completed", at=OLD)
        )
        session.add(TenantEvent(id=new_id("evt"), tenant_id=tenant, type="batch.completed"))

    purged = _run(world, default_days=None)

    assert purged.batches == 1
    assert world.count(Batch, tenant_id=tenant) == 1
    assert world.count(Batch, id=still_used) == 1
    assert world.count(TenantEvent, tenant_id=tenant) == 1


def test_settled_deliveries_of_old_tenant_events_go(world: World) -> None:
    tenant = world.tenant(retention_days=30)
    forever = world.tenant(retention_days=None)

    old_sent = world.delivery(tenant, OLD, "succeeded")
    old_failed = world.delivery(tenant, OLD, "failed")
    old_pending = world.delivery(tenant, OLD, "pending")
    recent = world.delivery(tenant, RECENT, "succeeded")
    kept_forever = world.delivery(forever, OLD, "succeeded")

    purged = _run(world, default_days=None)

    assert purged.tenant_deliveries == 2
    with world.sessions() as session:
        left = set(session.scalars(select(Delivery.id).where(Delivery.job_id.is_(None))))
        attempts = set(session.scalars(select(DeliveryAttempt.delivery_id)))
    assert {old_pending, recent, kept_forever} <= left
    assert not {old_sent, old_failed} & left
    assert not {old_sent, old_failed} & attempts  # their attempt log went with them


def test_the_cli_runs_a_pass_and_a_dry_run_deletes_nothing(
    world: World, database_url: str, tmp_path: Path
) -> None:
    tenant = world.tenant(retention_days=30)
    old = world.job(tenant, OLD)
    recent = world.job(tenant, RECENT)
    env = {
        "DATABASE_URL": database_url,
        "EDITQUEUE_STORAGE_URL": f"file://{tmp_path}",
        "EDITQUEUE_DATA_DIR": str(tmp_path),
    }

    def cli(*args: str) -> str:
        done = editqueue_cli("retention", "run", *args, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "would delete 1 job(s) and 2 stored object(s)" in cli("--dry-run")
    assert world.jobs_of(tenant) == {old, recent}
    assert cli("--batch-size", "10").startswith("deleted 1 job(s), 2 stored object(s)")
    assert world.jobs_of(tenant) == {recent}
