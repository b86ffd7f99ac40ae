"""The webhook delivery engine on the test database, its POSTs answered by httpx.MockTransport."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from editqueue import tasknames
from editqueue.config import Settings
from editqueue.db import make_engine, make_session_factory
from editqueue.ids import new_id
from editqueue.infra import outbox
from editqueue.models import Delivery, DeliveryAttempt, JobEvent, Tenant, WebhookEndpoint
from editqueue.tenants import create_tenant
from editqueue.webhooks import delivery as engine
from editqueue.webhooks.endpoints import subscribed_endpoints
from editqueue.webhooks.fanout import Target, add_deliveries, job_event_targets
from editqueue.webhooks.limits import TargetLimiter
from editqueue.webhooks.signing import attempt_lease, generate_secret, verify
from tests.unit.provider_fakes import make_harness

URL = "https://93.184.215.14/hook"  # a public literal: the guard needs no DNS
NEW_URL = "https://93.184.215.15/hook"
THIRD_URL = "https://93.184.215.16/hook"
BODY = '{"type": "job.succeeded", "timestamp": "", "data": {}}'

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
def sessions(module_database: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a database of this module's own: the session database has a live stack
    whose beat sweeps due deliveries, and would lease the ones these tests hand out."""
    engine = make_engine(module_database)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def tenant_id(sessions: sessionmaker[Session]) -> str:
    with sessions() as session, session.begin():
        return create_tenant(session, new_id("t")).id


def add_endpoint(sessions, tenant_id: str, url: str = URL, events=(), **values) -> str:
    endpoint_id = new_id("ep")
    values.setdefault("secret", generate_secret())
    with sessions() as session, session.begin():
        session.add(
            WebhookEndpoint(
                id=endpoint_id, tenant_id=tenant_id, url=url, events=list(events), **values
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


def test_a_job_delivery_to_a_url_the_job_no_longer_has_ends_unsent(sessions) -> None:
    # An endpoint's copy whose endpoint was deleted: endpoint_id cleared, URL not the job's.
    h = make_harness(sessions, {})
    job_id = h.new_job(webhook_url=URL)
    delivery_id, lease = add_delivery(sessions, h.tenant_id, job_id=job_id, url=NEW_URL)
    receiver = Receiver(lambda r: httpx.Response(200))
    assert send(sessions, delivery_id, lease, receiver) == "failed"
    assert (row(sessions, delivery_id).error or "").startswith("not sent:")
    assert receiver.requests == []


def signed_by(request: httpx.Request, secret: str) -> bool:
    return verify(secret, dict(request.headers), request.content)


def test_a_job_url_delivery_is_signed_with_the_tenant_secrets_in_force(sessions) -> None:
    h = make_harness(sessions, {})
    old = generate_secret()
    with sessions() as session, session.begin():
        tenant = session.get(Tenant, h.tenant_id)
        assert tenant is not None
        current = tenant.webhook_secret
        tenant.previous_webhook_secret = old
        tenant.previous_webhook_secret_until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    delivery_id, lease = add_delivery(sessions, h.tenant_id, job_id=h.new_job(webhook_url=URL))
    receiver = Receiver(lambda r: httpx.Response(200))
    assert send(sessions, delivery_id, lease, receiver) == "succeeded"
    (request,) = receiver.requests
    assert len(request.headers["webhook-signature"].split()) == 2
    assert signed_by(request, current) and signed_by(request, old)


def test_an_endpoint_delivery_is_signed_with_the_endpoint_secrets_in_force(
    sessions, tenant_id: str
) -> None:
    current, old, expired = generate_secret(), generate_secret(), generate_secret()
    hour = dt.timedelta(hours=1)
    rotating = add_endpoint(
        sessions,
        tenant_id,
        secret=current,
        previous_secret=old,
        previous_secret_until=dt.datetime.now(dt.UTC) + hour,
    )
    rotated = add_endpoint(
        sessions,
        tenant_id,
        url=NEW_URL,
        secret=current,
        previous_secret=expired,
        previous_secret_until=dt.datetime.now(dt.UTC) - hour,
    )
    receiver = Receiver(lambda r: httpx.Response(200))
    for endpoint_id, url in ((rotating, URL), (rotated, NEW_URL)):
        delivery_id, lease = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id, url=url)
        assert send(sessions, delivery_id, lease, receiver) == "succeeded"
    during, after = receiver.requests
    assert signed_by(during, current) and signed_by(during, old)
    assert len(after.headers["webhook-signature"].split()) == 1
    assert signed_by(after, current) and not signed_by(after, expired)


# -- a delivery that ends while its POST is in flight ----------------------------------------


def test_a_delivery_ended_during_its_post_stays_ended_and_the_post_is_logged(sessions) -> None:
    h = make_harness(sessions, {})
    job_id = h.new_job(webhook_url=URL)
    delivery_id, lease = add_delivery(sessions, h.tenant_id, job_id=job_id)
    ended = "not sent: the endpoint was deleted"

    def end_it_then_fail(request: httpx.Request) -> httpx.Response:
        with sessions() as session, session.begin():
            session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(state="failed", next_attempt_at=None, error=ended)
            )
        return httpx.Response(500)

    # What this attempt made of it (a retry), though the row no longer takes it.
    assert send(sessions, delivery_id, lease, Receiver(end_it_then_fail)) == "pending"
    delivery = row(sessions, delivery_id)
    assert (delivery.state, delivery.attempt, delivery.error) == ("failed", 0, ended)
    assert (delivery.next_attempt_at, delivery.status_code) == (None, None)
    assert [(a.attempt, a.status_code) for a in attempts(sessions, delivery_id)] == [(1, 500)]
    with sessions() as session:
        event = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "webhook.attempt")
        ).one()
    assert (event.detail["attempt"], event.detail["status_code"]) == (1, 500)
    assert event.tenant_id == h.tenant_id and not event.terminal


def test_an_endpoint_delivery_adds_no_job_event(sessions, tenant_id: str) -> None:
    delivery_id, lease = add_delivery(
        sessions, tenant_id, endpoint_id=add_endpoint(sessions, tenant_id)
    )
    assert send(sessions, delivery_id, lease, Receiver(lambda r: httpx.Response(500))) == (
        "pending"
    )
    with sessions() as session:
        trail = session.scalars(
            select(JobEvent).where(JobEvent.detail["delivery_id"].astext == delivery_id)
        ).all()
    assert trail == []
    assert [a.status_code for a in attempts(sessions, delivery_id)] == [500]


# -- fan-out: targets and the rows handed out --------------------------------------------------


def fan_out(session: Session, tenant_id: str, event_id: str, targets: list[Target], job_id=None):
    return add_deliveries(
        session,
        tenant_id=tenant_id,
        job_id=job_id,
        event_id=event_id,
        event_type="job.succeeded",
        body=BODY,
        targets=targets,
        settings=SETTINGS,
    )


def test_subscribers_are_the_enabled_endpoints_wanting_the_type_oldest_first(
    sessions, tenant_id: str
) -> None:
    everything = add_endpoint(sessions, tenant_id)
    started = add_endpoint(sessions, tenant_id, url=NEW_URL, events=["job.started"])
    failed = add_endpoint(sessions, tenant_id, url=THIRD_URL, events=["job.failed"])
    add_endpoint(sessions, tenant_id, disabled=True)
    with sessions() as session, session.begin():
        other_tenant = create_tenant(session, new_id("t")).id
    add_endpoint(sessions, other_tenant)
    with sessions() as session:
        wanted = {
            t: [(e.id, e.url) for e in subscribed_endpoints(session, tenant_id, t)]
            for t in ("job.succeeded", "job.started", "job.failed")
        }
    assert wanted == {
        "job.succeeded": [(everything, URL)],
        "job.started": [(started, NEW_URL)],
        "job.failed": sorted([(everything, URL), (failed, THIRD_URL)]),
    }


def test_an_endpoint_wins_over_the_job_url_with_the_same_address(sessions) -> None:
    h = make_harness(sessions, {})
    job = h.job(h.new_job(webhook_url=URL))
    with sessions() as session:
        assert job_event_targets(session, job, "job.succeeded") == [Target(URL, None)]
        assert job_event_targets(session, job, "job.started") == []
    other = add_endpoint(sessions, h.tenant_id, url=NEW_URL)
    same = add_endpoint(sessions, h.tenant_id, url=URL)
    with sessions() as session:
        assert job_event_targets(session, job, "job.succeeded") == [
            Target(NEW_URL, other),
            Target(URL, same),
        ]


def test_a_fan_out_hands_out_one_leased_row_per_target_in_order(sessions) -> None:
    h = make_harness(sessions, {})
    job_id = h.new_job(webhook_url=THIRD_URL)
    first = add_endpoint(sessions, h.tenant_id)
    second = add_endpoint(sessions, h.tenant_id, url=NEW_URL)
    targets = [Target(URL, first), Target(NEW_URL, second), Target(THIRD_URL, None)]
    event_id = new_id("evt")
    with sessions() as session, session.begin():
        messages = fan_out(session, h.tenant_id, event_id, targets, job_id=job_id)
    assert all(isinstance(m, outbox.Leased) for m in messages)
    assert [m.task for m in messages if isinstance(m, outbox.Leased)] == [
        tasknames.DELIVER_WEBHOOK
    ] * 3
    handed_out = [m.args for m in messages if isinstance(m, outbox.Leased)]
    rows = [row(sessions, delivery_id) for delivery_id, _ in handed_out]
    assert [(r.url, r.endpoint_id) for r in rows] == [(t.url, t.endpoint_id) for t in targets]
    lease = attempt_lease(SETTINGS.webhook_timeout)
    for r, (_, lease_id) in zip(rows, handed_out, strict=True):
        assert (r.lease_id, r.state, r.attempt) == (lease_id, "pending", 0)
        assert (r.tenant_id, r.job_id, r.event_id) == (h.tenant_id, job_id, event_id)
        assert (r.event_type, r.payload) == ("job.succeeded", BODY)
        assert lease - 5 < seconds_until(r.next_attempt_at) <= lease
    # What was handed out is what a worker claims and sends.
    receiver = Receiver(lambda r: httpx.Response(200))
    for delivery_id, lease_id in handed_out:
        assert send(sessions, delivery_id, lease_id, receiver) == "succeeded"
    assert [str(r.url) for r in receiver.requests] == [URL, NEW_URL, THIRD_URL]


def test_a_second_fan_out_of_an_event_only_fills_the_gaps(sessions, tenant_id: str) -> None:
    event_id = new_id("evt")
    with sessions() as session, session.begin():
        (kept,) = fan_out(session, tenant_id, event_id, [Target(URL, None)])
    with sessions() as session, session.begin():
        (added,) = fan_out(session, tenant_id, event_id, [Target(URL, None), Target(NEW_URL, None)])
    assert isinstance(kept, outbox.Leased) and isinstance(added, outbox.Leased)
    assert row(sessions, added.args[0]).url == NEW_URL
    assert row(sessions, kept.args[0]).lease_id == kept.args[1]  # the first lease stands
    with sessions() as session, session.begin():
        assert fan_out(session, tenant_id, event_id, [Target(URL, None)]) == []
        assert fan_out(session, tenant_id, new_id("evt"), []) == []


def test_of_two_targets_with_one_url_the_first_gets_the_delivery(sessions, tenant_id: str) -> None:
    first = add_endpoint(sessions, tenant_id)
    second = add_endpoint(sessions, tenant_id)
    event_id = new_id("evt")
    with sessions() as session, session.begin():
        (message,) = fan_out(
            session, tenant_id, event_id, [Target(URL, first), Target(URL, second)]
        )
    assert isinstance(message, outbox.Leased)
    assert row(sessions, message.args[0]).endpoint_id == first


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


# -- sending in place (the worker that ended the job) --------------------------------------------


def send_here(sessions, delivery_id: str, lease: str, receiver: Receiver, limiter) -> str | None:
    return engine.send_in_place(
        sessions, delivery_id, lease, client=receiver.client, settings=SETTINGS, limiter=limiter
    )


def test_a_target_not_known_to_be_quick_is_handed_back_under_a_fresh_lease(
    sessions, tenant_id: str
) -> None:
    endpoint_id = add_endpoint(sessions, tenant_id)
    delivery_id, lease = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    receiver = Receiver(lambda r: httpx.Response(200))
    limiter = TargetLimiter(4)
    fresh = send_here(sessions, delivery_id, lease, receiver, limiter)
    assert fresh is not None and fresh != lease
    assert receiver.requests == [] and row(sessions, delivery_id).lease_id == fresh
    # The queued message carries the fresh lease; the old one is a duplicate now.
    assert send(sessions, delivery_id, lease, receiver, limiter=limiter) is None
    assert send(sessions, delivery_id, fresh, receiver, limiter=limiter) == "succeeded"
    assert limiter.in_flight(endpoint_id) == 0


def test_a_quick_target_is_sent_in_place_and_recorded(sessions, tenant_id: str) -> None:
    endpoint_id = add_endpoint(sessions, tenant_id)
    receiver = Receiver(lambda r: httpx.Response(200))
    limiter = TargetLimiter(4)
    first, lease = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    assert send(sessions, first, lease, receiver, limiter=limiter) == "succeeded"  # now quick
    second, lease = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    assert send_here(sessions, second, lease, receiver, limiter) is None
    delivery = row(sessions, second)
    assert (delivery.state, delivery.attempt, delivery.lease_id) == ("succeeded", 1, None)
    assert [a.status_code for a in attempts(sessions, second)] == [200]
    assert len(receiver.requests) == 2 and limiter.in_flight(endpoint_id) == 0
    # A second message with the same lease finds nothing to send.
    assert send_here(sessions, second, lease, receiver, limiter) is None
    assert len(receiver.requests) == 2


def test_a_quick_target_whose_slots_are_taken_goes_through_the_queue(
    sessions, tenant_id: str
) -> None:
    endpoint_id = add_endpoint(sessions, tenant_id)
    receiver = Receiver(lambda r: httpx.Response(200))
    limiter = TargetLimiter(1)
    first, lease = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    assert send(sessions, first, lease, receiver, limiter=limiter) == "succeeded"
    token = limiter.try_acquire(endpoint_id)  # another attempt to it is in flight
    assert token is not None
    second, lease = add_delivery(sessions, tenant_id, endpoint_id=endpoint_id)
    assert send_here(sessions, second, lease, receiver, limiter) is not None
    assert len(receiver.requests) == 1
    limiter.release(endpoint_id, token)
