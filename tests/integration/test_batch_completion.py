"""`batch.completed` from the batch's live-jobs counter, in-process on a database of its own.

Jobs end through the real lifecycle in real transactions; the concurrency tests hold one
transaction open while another runs into its row lock, to reproduce the interleavings
that a check inside the finishing transaction used to get wrong.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from editqueue import migrate
from editqueue.config import Settings
from editqueue.db import make_engine, make_session_factory, transaction
from editqueue.ids import new_id
from editqueue.infra.storage import Storage, open_storage
from editqueue.jobs import lifecycle
from editqueue.jobs.batches import cancel_batch, insert_batch
from editqueue.jobs.states import NewJob
from editqueue.jobs.status import LIVE
from editqueue.models import Batch, Delivery, Job, TenantEvent
from editqueue.tenants import create_tenant
from editqueue.webhooks import batches as webhook_batches
from tests.conftest import wait_until
from tests.integration.test_webhook_engine import _running_job, add_endpoint, settings_for
from tests.stack import create_database, drop_database

# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def factory(module_database: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(module_database, pool_size=12)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def settings(module_database: str, redis_url: str) -> Settings:
    return settings_for(module_database, redis_url)


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return open_storage(f"file://{tmp_path}", public_url="http://x", signing_key=b"k")


@pytest.fixture
def tenant_id(factory: sessionmaker[Session]) -> str:
    """A tenant with one endpoint, so the event also gets a delivery."""
    with transaction(factory) as session:
        tenant = create_tenant(session, new_id("t")).id
    add_endpoint(factory, tenant, "http://127.0.0.1:9/hook")
    return tenant


def running_batch(
    factory: sessionmaker[Session], tenant_id: str, size: int
) -> tuple[str, list[str]]:
    """A batch of `size` running jobs, its counter as `insert_batch` would have set it."""
    with transaction(factory) as session:
        batch = Batch(id=new_id("bat"), tenant_id=tenant_id, total=size, live_jobs=size, meta={})
        session.add(batch)
        session.flush()
        ids = sorted(new_id("job") for _ in range(size))
        for job_id in ids:
            session.add(_running_job(job_id, tenant_id, batch.id))
    return batch.id, ids


def end(
    session: Session, job_id: str, status: str, storage: Storage, settings: Settings
) -> lifecycle.Finished:
    finished = lifecycle.complete_job(
        session, job_id, status, storage=storage, settings=settings, outputs=[], from_statuses=LIVE
    )
    assert finished is not None
    return finished


def completed_events(factory: sessionmaker[Session], tenant_id: str) -> list[TenantEvent]:
    with factory() as session:
        return list(
            session.scalars(
                select(TenantEvent).where(
                    TenantEvent.tenant_id == tenant_id, TenantEvent.type == "batch.completed"
                )
            )
        )


def batch_row(factory: sessionmaker[Session], batch_id: str) -> Batch:
    with factory() as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        return batch


def counts(**statuses: int) -> dict[str, int]:
    base = dict.fromkeys(("queued", "running", "succeeded", "failed", "canceled"), 0)
    return {"total": sum(statuses.values()), **base, **statuses}


def backend_pid(session: Session) -> int:
    return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def wait_blocked_by(factory: sessionmaker[Session], pid: int) -> None:
    """Wait until some backend is waiting for a lock that backend `pid` holds."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")

    def blocked() -> bool:
        with factory() as session:
            return bool(session.execute(query, {"pid": pid}).scalar_one())

    wait_until(blocked, timeout=10, interval=0.02)


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `work` in a thread; its result or exception lands in the dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def joined(thread: threading.Thread, outcome: dict[str, Any]) -> Any:
    thread.join(timeout=30)
    assert not thread.is_alive(), "the transaction never finished"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


# -- insert -----------------------------------------------------------------------------------


def test_insert_batch_counts_every_job_live(factory: sessionmaker[Session], tenant_id: str) -> None:
    new_jobs = [
        NewJob(
            model="seededit-3.0",
            prompt="p",
            params={},
            inputs=[],
            provider_pin=None,
            provider_options={},
            webhook_url=None,
            webhook_events=[],
            metadata={},
            deadline_seconds=600,
        )
        for _ in range(3)
    ]
    with transaction(factory) as session:
        created = insert_batch(session, tenant_id, new_jobs)
    batch = batch_row(factory, created.batch.id)
    assert (batch.total, batch.live_jobs, batch.completed_at) == (3, 3, None)


# -- one finisher at a time -----------------------------------------------------------------------


def test_the_last_job_to_end_fires_the_event_once(
    factory: sessionmaker[Session], tenant_id: str, storage: Storage, settings: Settings
) -> None:
    batch_id, (first, second, third) = running_batch(factory, tenant_id, 3)
    for job_id, status in ((first, "succeeded"), (second, "failed")):
        with transaction(factory) as session:
            end(session, job_id, status, storage, settings)
        assert completed_events(factory, tenant_id) == []
    assert batch_row(factory, batch_id).live_jobs == 1
    with transaction(factory) as session:
        end(session, third, "canceled", storage, settings)
    [event] = completed_events(factory, tenant_id)
    assert event.data["id"] == batch_id and event.data["object"] == "batch"
    assert event.data["counts"] == counts(succeeded=1, failed=1, canceled=1)
    assert event.data["job_ids"] == [first, second, third]
    batch = batch_row(factory, batch_id)
    assert batch.live_jobs == 0 and batch.completed_at is not None
    assert event.data["completed_at"] is not None
    with factory() as session:
        [delivery] = session.scalars(select(Delivery).where(Delivery.event_id == event.id))
    assert delivery.event_type == "batch.completed"


def test_an_old_complete_batch_message_fires_nothing_more(
    factory: sessionmaker[Session], tenant_id: str, storage: Storage, settings: Settings
) -> None:
    batch_id, (only,) = running_batch(factory, tenant_id, 1)
    with transaction(factory) as session:
        assert webhook_batches.complete_if_done(session, batch_id, settings=settings) == []
        end(session, only, "succeeded", storage, settings)
    for _ in range(2):
        with transaction(factory) as session:
            assert webhook_batches.complete_if_done(session, batch_id, settings=settings) == []
    assert len(completed_events(factory, tenant_id)) == 1


def test_an_old_message_completes_a_batch_whose_jobs_ended_before_the_counter(
    factory: sessionmaker[Session], tenant_id: str, settings: Settings
) -> None:
    # As the backfill leaves a batch whose last job ended, its check still queued.
    batch_id, ids = running_batch(factory, tenant_id, 2)
    with transaction(factory) as session:
        session.execute(
            text("UPDATE jobs SET status = 'succeeded' WHERE batch_id = :b"), {"b": batch_id}
        )
        session.execute(text("UPDATE batches SET live_jobs = 0 WHERE id = :b"), {"b": batch_id})
    with transaction(factory) as session:
        assert webhook_batches.complete_if_done(session, batch_id, settings=settings)
    with transaction(factory) as session:
        assert webhook_batches.complete_if_done(session, batch_id, settings=settings) == []
    [event] = completed_events(factory, tenant_id)
    assert event.data["counts"] == counts(succeeded=2) and event.data["job_ids"] == ids


def test_an_old_message_does_not_complete_a_batch_with_live_jobs(
    factory: sessionmaker[Session], tenant_id: str, storage: Storage, settings: Settings
) -> None:
    batch_id, (first, second) = running_batch(factory, tenant_id, 2)
    with transaction(factory) as session:
        end(session, first, "succeeded", storage, settings)
    with transaction(factory) as session:
        assert webhook_batches.complete_if_done(session, batch_id, settings=settings) == []
    assert batch_row(factory, batch_id).live_jobs == 1
    with transaction(factory) as session:
        end(session, second, "succeeded", storage, settings)
    assert len(completed_events(factory, tenant_id)) == 1


def test_the_counter_never_goes_below_zero(
    factory: sessionmaker[Session], tenant_id: str, settings: Settings
) -> None:
    batch_id, _ = running_batch(factory, tenant_id, 1)
    with transaction(factory) as session:
        assert webhook_batches.jobs_ended(session, batch_id, 1, settings=settings)
    with transaction(factory) as session:
        assert webhook_batches.jobs_ended(session, batch_id, 1, settings=settings) == []
        assert webhook_batches.jobs_ended(session, batch_id, 5, settings=settings) == []
    assert batch_row(factory, batch_id).live_jobs == 0
    assert len(completed_events(factory, tenant_id)) == 1


# -- finishers at once ----------------------------------------------------------------------------


def test_two_finishers_of_the_last_two_jobs_fire_one_event(
    factory: sessionmaker[Session], tenant_id: str, storage: Storage, settings: Settings
) -> None:
    batch_id, (first, second) = running_batch(factory, tenant_id, 2)
    one = factory()
    try:
        with one.begin():
            end(one, first, "succeeded", storage, settings)
            # `one` holds the batch row; the other finisher ends its job (its snapshot
            # sees `first` still running) and then waits for that row.
            thread, outcome = in_thread(
                lambda: _end_in_own_transaction(factory, second, storage, settings)
            )
            wait_blocked_by(factory, backend_pid(one))
            assert completed_events(factory, tenant_id) == []
    finally:
        one.close()
    joined(thread, outcome)
    [event] = completed_events(factory, tenant_id)
    assert event.data["counts"] == counts(succeeded=1, failed=1)
    assert event.data["job_ids"] == [first, second]
    assert batch_row(factory, batch_id).live_jobs == 0


def _end_in_own_transaction(
    factory: sessionmaker[Session], job_id: str, storage: Storage, settings: Settings
) -> None:
    with transaction(factory) as session:
        end(session, job_id, "failed", storage, settings)


def test_many_finishers_at_once_fire_one_event_with_exact_counts(
    factory: sessionmaker[Session], tenant_id: str, storage: Storage, settings: Settings
) -> None:
    size = 8
    for _ in range(3):
        batch_id, ids = running_batch(factory, tenant_id, size)
        start = threading.Barrier(size)
        statuses = ["succeeded", "failed"] * (size // 2)
        threads = [
            in_thread(functools.partial(_finish_together, factory, start, j, s, storage, settings))
            for j, s in zip(ids, statuses, strict=True)
        ]
        for thread, outcome in threads:
            joined(thread, outcome)
        mine = [e for e in completed_events(factory, tenant_id) if e.data["id"] == batch_id]
        assert len(mine) == 1
        assert mine[0].data["counts"] == counts(succeeded=size // 2, failed=size // 2)
        assert batch_row(factory, batch_id).live_jobs == 0


def _finish_together(
    factory: sessionmaker[Session],
    start: threading.Barrier,
    job_id: str,
    status: str,
    storage: Storage,
    settings: Settings,
) -> None:
    with transaction(factory) as session:
        # A statement first, so every thread holds an open transaction at the barrier.
        session.execute(text("SELECT 1"))
        start.wait(timeout=10)
        end(session, job_id, status, storage, settings)


# -- batch cancel ---------------------------------------------------------------------------------


def test_a_batch_cancel_fires_once_with_the_final_counts(
    factory: sessionmaker[Session], tenant_id: str, storage: Storage, settings: Settings
) -> None:
    batch_id, (first, second, third) = running_batch(factory, tenant_id, 3)
    with transaction(factory) as session:
        end(session, first, "succeeded", storage, settings)
    with transaction(factory) as session:
        cancel_batch(session, tenant_id, batch_id, storage=storage, settings=settings)
    with transaction(factory) as session:
        assert cancel_batch(session, tenant_id, batch_id, storage=storage, settings=settings) == []
    [event] = completed_events(factory, tenant_id)
    assert event.data["counts"] == counts(succeeded=1, canceled=2)
    assert event.data["job_ids"] == [first, second, third]
    assert batch_row(factory, batch_id).live_jobs == 0


def test_a_batch_cancel_and_a_worker_ending_one_of_its_jobs_do_not_deadlock(
    factory: sessionmaker[Session], tenant_id: str, storage: Storage, settings: Settings
) -> None:
    # The cancel ends `first`, then waits for `second` (held below); meanwhile a worker
    # ends `third`, locking its job row and then the batch row. Had the cancel locked the
    # batch row after `first`, the worker would wait for it, and once `second` is let go
    # the cancel would wait for `third`: PostgreSQL would abort one of them.
    batch_id, (first, second, third) = running_batch(factory, tenant_id, 3)
    holder = factory()
    try:
        with holder.begin():
            holder.execute(text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": second})
            cancel = in_thread(
                lambda: _cancel_in_own_transaction(factory, tenant_id, batch_id, storage, settings)
            )
            wait_blocked_by(factory, backend_pid(holder))
            worker = in_thread(lambda: _end_in_own_transaction(factory, third, storage, settings))
            worker[0].join(timeout=5)
            worker_waited_for_the_cancel = worker[0].is_alive()
    finally:
        holder.close()
    joined(*worker)
    joined(*cancel)
    assert not worker_waited_for_the_cancel
    [event] = completed_events(factory, tenant_id)
    assert event.data["counts"] == counts(failed=1, canceled=2)
    with factory() as session:
        statuses = dict(
            session.execute(select(Job.id, Job.status).where(Job.batch_id == batch_id))
            .tuples()
            .all()
        )
    assert statuses == {first: "canceled", second: "canceled", third: "failed"}


def _cancel_in_own_transaction(
    factory: sessionmaker[Session],
    tenant_id: str,
    batch_id: str,
    storage: Storage,
    settings: Settings,
) -> None:
    with transaction(factory) as session:
        cancel_batch(session, tenant_id, batch_id, storage=storage, settings=settings)


# -- migration 0008 -------------------------------------------------------------------------------


def test_the_migration_backfills_live_jobs(database_url: str) -> None:
    url = create_database(database_url)
    engine = make_engine(url)
    try:
        command.downgrade(migrate.alembic_config(url), "0007")
        sessions = make_session_factory(engine)
        with transaction(sessions) as session:
            tenant = create_tenant(session, new_id("t")).id
        shapes = {
            # batch: (completed, statuses of its jobs), and the count the backfill must give
            "open": (False, ["queued", "queued", "running", "succeeded", "canceled"], 3),
            "ended": (False, ["succeeded", "failed"], 0),
            "completed": (True, ["succeeded"], 0),
            "empty": (False, [], 0),
        }
        ids = {name: new_id("bat") for name in shapes}
        with transaction(sessions) as session:
            for name, (completed, statuses, _) in shapes.items():
                # Raw SQL: at 0007 the table has no live_jobs, which the model now has.
                session.execute(
                    text(
                        "INSERT INTO batches (id, tenant_id, total, metadata, completed_at)"
                        " VALUES (:id, :tenant, :total, '{}', :completed)"
                    ),
                    {
                        "id": ids[name],
                        "tenant": tenant,
                        "total": len(statuses),
                        "completed": dt.datetime.now(dt.UTC) if completed else None,
                    },
                )
                for status in statuses:
                    job = _running_job(new_id("job"), tenant, ids[name])
                    job.status = status
                    session.add(job)
            session.add(_running_job(new_id("job"), tenant))  # no batch: not counted anywhere
        migrate.upgrade(url)
        with sessions() as session:
            live = dict(
                session.execute(select(Batch.id, Batch.live_jobs).where(Batch.id.in_(ids.values())))
                .tuples()
                .all()
            )
        assert live == {ids[name]: shape[2] for name, shape in shapes.items()}
    finally:
        engine.dispose()
        drop_database(url)


def test_a_batch_counts_from_its_backfilled_value(
    factory: sessionmaker[Session], tenant_id: str, storage: Storage, settings: Settings
) -> None:
    # Two of three jobs ended before the upgrade: the backfill left live_jobs at 1.
    batch_id, (first, second, third) = running_batch(factory, tenant_id, 3)
    with transaction(factory) as session:
        session.execute(
            text("UPDATE jobs SET status = 'succeeded' WHERE id = ANY(:ids)"),
            {"ids": [first, second]},
        )
        session.execute(text("UPDATE batches SET live_jobs = 1 WHERE id = :b"), {"b": batch_id})
    with transaction(factory) as session:
        end(session, third, "failed", storage, settings)
    [event] = completed_events(factory, tenant_id)
    assert event.data["counts"] == counts(succeeded=2, failed=1)
