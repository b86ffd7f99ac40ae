"""The webhook delivery engine on the test database, its POSTs answered by httpx.MockTransport."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from editqueue.config import Settings
from editqueue.db import make_engine, make_session_factory
from editqueue.ids import new_id
from editqueue.models import Delivery, DeliveryAttempt, JobEvent, WebhookEndpoint
from editqueue.tenants import create_tenant
from editqueue.webhooks import delivery as engine
from editqueue.webhooks.limits import TargetLimiter
from editqueue.webhooks.signing import generate_secret
from tests.stack import create_database, drop_database
from tests.unit.provider_fakes import make_harness

URL = "https://93.184.215.14/hook"  # a public literal: the guard needs no DNS
NEW_URL = "https://93.184.215.15/hook"

Answer = Callable[[httpx.Request], httpx.Response]


class Receiver:
    """The POSTs a delivery makes, answered as told."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []
        self.client = httpx.Client(transport=httpx.MockTransport(self._handle))

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


SETTINGS = Settings(webhook_schedule=(5.0, 300.0), webhook_timeout=2.0)


@pytest.fixture(scope="module")
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a database of this module's own: the session database has a live stack
    whose beat sweeps due deliveries, and would lease the ones these tests hand out."""
    url = create_database(database_url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()
    drop_database(url)


@pytest.fixture
def tenant_id(sessions: sessionmaker[Session]) -> str:
    with sessions() as session, session.begin():
        return create_tenant(session, new_id("t")).id


def add_endpoint(sessions, tenant_id: str, url: str = URL, **values) -> str:
    endpoint_id = new_id("ep")
    with sessions() as session, session.begin():
        session.add(
            WebhookEndpoint(
                id=endpoint_id,
                tenant_id=tenant_id,
                url=url,
                events=[],
                secret=generate_secret(),
                **values,
            )
        )
    return endpoint_id


def add_delivery(
    sessions, tenant_id: str, *, endpoint_id=None, job_id=None, url=URL, attempt=0, event_id=None
) -> tuple[str, str]:
    """A pending delivery handed out under a lease; returns (id, lease)."""
    delivery_id, lease = new_id("dlv"), new_id("lease")
    with sessions() as session, session.begin():
        session.add(
            Delivery(
                id=delivery_id,
                tenant_id=tenant_id,
                job_id=job_id,
                endpoint_id=endpoint_id,
                event_id=event_id or new_id("evt"),
                event_type="job.succeeded",
                url=url,
                payload='{"type": "job.succeeded"}',
                state="pending",
                attempt=attempt,
                lease_id=lease,
                next_attempt_at=dt.datetime.now(dt.UTC),
            )
        )
    return delivery_id, lease


def row(sessions, delivery_id: str) -> Delivery:
    with sessions() as session:
        delivery = session.get(Delivery, delivery_id)
        session.expunge(delivery)
        return delivery


def endpoint(sessions, endpoint_id: str) -> WebhookEndpoint:
    with sessions() as session:
        found = session.get(WebhookEndpoint, endpoint_id)
        session.expunge(found)
        return found


def attempts(sessions, delivery_id: str) -> list[DeliveryAttempt]:
    with sessions() as session:
        return list(
            session.scalars(
                select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
            )
        )


def send(sessions, delivery_id: str, lease: str, receiver: Receiver, **kw) -> str | None:
    kw.setdefault("limiter", TargetLimiter(4))
    return engine.attempt_delivery(
        sessions, delivery_id, lease, client=receiver.client, settings=SETTINGS, **kw
    )


def seconds_until(moment: dt.datetime | None) -> float:
    assert moment is not None
    return (moment - dt.datetime.now(dt.UTC)).total_seconds()


# -- hand-out and claim ------------------------------------------------------------------------


def test_the_sweep_leases_due_pending_deliveries_only(sessions, tenant_id: str) -> None:
    endpoint_id = add_endpoint(sessions, tenant_id)
    due, _ = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    later, _ = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    done, _ = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    with sessions() as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.id == later)
            .values(next_attempt_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        )
        session.execute(update(Delivery).where(Delivery.id == done).values(state="succeeded"))
        leased = dict(engine.sweep_due(session, limit=10_000, lease_seconds=30))
    assert due in leased and later not in leased and done not in leased
    assert row(sessions, due).lease_id == leased[due]
    assert seconds_until(row(sessions, due).next_attempt_at) > 25


def test_a_duplicate_hand_out_finds_nothing(sessions, tenant_id: str) -> None:
    delivery_id, _ = add_delivery(
        sessions, tenant_id, endpoint_id=add_endpoint(sessions, tenant_id)
    )
    receiver = Receiver(lambda r: httpx.Response(200))
    assert send(sessions, delivery_id, "an-old-lease", receiver) is None
    assert receiver.requests == []


# -- outcomes ----------------------------------------------------------------------------------


def test_a_2xx_succeeds_and_clears_the_endpoint_failure_run(sessions, tenant_id: str) -> None:
    endpoint_id = add_endpoint(sessions, tenant_id, failing_since=dt.datetime.now(dt.UTC))
    delivery_id, lease = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    receiver = Receiver(lambda r: httpx.Response(200, text="thanks"))
    # limiter=None: the worker process's own fence
    assert send(sessions, delivery_id, lease, receiver, limiter=None) == "succeeded"
    delivery = row(sessions, delivery_id)
    assert (delivery.state, delivery.attempt, delivery.status_code) == ("succeeded", 1, 200)
    assert delivery.next_attempt_at is None
    assert [a.status_code for a in attempts(sessions, delivery_id)] == [200]
    assert endpoint(sessions, endpoint_id).failing_since is None
    request = receiver.requests[0]
    assert request.headers["webhook-id"] == delivery.event_id
    assert request.headers["webhook-signature"].startswith("v1,")


def test_a_failure_is_retried_on_the_schedule(sessions, tenant_id: str) -> None:
    endpoint_id = add_endpoint(sessions, tenant_id)
    delivery_id, lease = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    receiver = Receiver(lambda r: httpx.Response(500, text="oops"))
    assert send(sessions, delivery_id, lease, receiver) == "pending"
    delivery = row(sessions, delivery_id)
    assert (delivery.attempt, delivery.status_code) == (1, 500)
    assert 4 <= seconds_until(delivery.next_attempt_at) <= 5.6  # 5 s ± 10 %
    assert endpoint(sessions, endpoint_id).failing_since is not None


def test_a_longer_retry_after_wins_over_the_schedule(sessions, tenant_id: str) -> None:
    delivery_id, lease = add_delivery(
        sessions, tenant_id, endpoint_id=add_endpoint(sessions, tenant_id)
    )
    receiver = Receiver(lambda r: httpx.Response(503, headers={"Retry-After": "120"}))
    assert send(sessions, delivery_id, lease, receiver) == "pending"
    assert 115 <= seconds_until(row(sessions, delivery_id).next_attempt_at) <= 121


def test_the_schedule_spent_gives_up(sessions, tenant_id: str) -> None:
    delivery_id, lease = add_delivery(
        sessions, tenant_id, endpoint_id=add_endpoint(sessions, tenant_id), attempt=2
    )
    receiver = Receiver(lambda r: httpx.Response(500))
    assert send(sessions, delivery_id, lease, receiver) == "failed"
    delivery = row(sessions, delivery_id)
    assert (delivery.state, delivery.attempt, delivery.next_attempt_at) == ("failed", 3, None)


def test_a_410_fails_the_delivery_and_disables_the_endpoint(sessions, tenant_id: str) -> None:
    endpoint_id = add_endpoint(sessions, tenant_id)
    delivery_id, lease = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    receiver = Receiver(lambda r: httpx.Response(410))
    assert send(sessions, delivery_id, lease, receiver) == "failed"
    assert row(sessions, delivery_id).status_code == 410
    disabled = endpoint(sessions, endpoint_id)
    assert disabled.disabled and "410" in disabled.disabled_reason


def test_a_job_delivery_leaves_the_attempt_in_the_job_trail(sessions) -> None:
    h = make_harness(sessions, {})
    job_id = h.new_job(webhook_url=URL)
    delivery_id, lease = add_delivery(sessions, h.tenant_id, job_id=job_id)
    receiver = Receiver(lambda r: httpx.Response(204))
    assert send(sessions, delivery_id, lease, receiver) == "succeeded"
    with sessions() as session:
        event = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "webhook.attempt")
        ).one()
    assert event.detail["delivery_id"] == delivery_id
    assert (event.detail["status_code"], event.detail["state"]) == (204, "succeeded")


# -- where it goes -----------------------------------------------------------------------------


def test_a_disabled_endpoint_ends_its_delivery_unsent(sessions, tenant_id: str) -> None:
    endpoint_id = add_endpoint(sessions, tenant_id, disabled=True)
    delivery_id, lease = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    receiver = Receiver(lambda r: httpx.Response(200))
    assert send(sessions, delivery_id, lease, receiver) == "failed"
    assert row(sessions, delivery_id).error.startswith("not sent:")
    assert receiver.requests == []


def test_a_delivery_follows_its_endpoint_to_a_new_url(sessions, tenant_id: str) -> None:
    endpoint_id = add_endpoint(sessions, tenant_id, url=NEW_URL)
    delivery_id, lease = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id, url=URL)
    receiver = Receiver(lambda r: httpx.Response(200))
    assert send(sessions, delivery_id, lease, receiver) == "succeeded"
    assert str(receiver.requests[0].url) == NEW_URL
    assert row(sessions, delivery_id).url == NEW_URL


def test_a_copy_whose_new_url_already_has_the_event_ends_unsent(sessions, tenant_id: str) -> None:
    endpoint_id = add_endpoint(sessions, tenant_id, url=NEW_URL)
    event_id = new_id("evt")
    add_delivery(sessions, tenant_id, endpoint_id=endpoint_id, url=NEW_URL, event_id=event_id)
    delivery_id, lease = add_delivery(
        sessions, tenant_id, endpoint_id=endpoint_id, url=URL, event_id=event_id
    )
    receiver = Receiver(lambda r: httpx.Response(200))
    assert send(sessions, delivery_id, lease, receiver) == "failed"
    assert "already goes to this URL" in row(sessions, delivery_id).error
    assert receiver.requests == []


# -- the per-target fence ----------------------------------------------------------------------


def test_a_full_target_puts_the_attempt_back_without_counting_it(sessions, tenant_id: str) -> None:
    endpoint_id = add_endpoint(sessions, tenant_id)
    delivery_id, lease = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    limiter = TargetLimiter(1)
    held = limiter.try_acquire(endpoint_id)  # another attempt to the same endpoint, in flight
    assert held is not None
    receiver = Receiver(lambda r: httpx.Response(200))
    assert send(sessions, delivery_id, lease, receiver, limiter=limiter) == "pending"
    delivery = row(sessions, delivery_id)
    assert (delivery.attempt, delivery.lease_id) == (0, None)
    assert seconds_until(delivery.next_attempt_at) >= 0.9
    assert receiver.requests == [] and attempts(sessions, delivery_id) == []


def test_the_process_limiter_is_one_per_process_and_sized_from_concurrency() -> None:
    limiter = engine.process_limiter(16, None)
    assert limiter is engine.process_limiter(16, None)
    assert (limiter.limit, limiter.quick_limit) == (4, 8)
