"""The delivery engine in-process, on a database of its own, against real loopback servers.

No worker runs on this database, so each attempt happens exactly when a test calls
`attempt_delivery`, with a guarded client whose allowance the test chooses.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import standardwebhooks
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from editqueue.config import Settings, load_settings
from editqueue.db import make_engine, make_session_factory, transaction
from editqueue.ids import new_id
from editqueue.infra.netguard import guarded_client
from editqueue.models import Delivery, DeliveryAttempt, Job, TenantEvent, WebhookEndpoint
from editqueue.tenants import create_api_key, create_tenant
from editqueue.webhooks import delivery as deliveries
from editqueue.webhooks.fanout import Target, add_deliveries
from editqueue.webhooks.limits import TargetLimiter
from editqueue.webhooks.secrets import rotate_endpoint_secret
from editqueue.webhooks.signing import generate_secret

Answer = Callable[[dict[str, str]], tuple[int, dict[str, str]]]

# -- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    """A loopback HTTP server recording every POST and answering with `answer`."""

    url: str
    hits: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@contextlib.contextmanager
def serve(host: str = "127.0.0.1", answer: Answer | None = None) -> Iterator[Server]:
    """Run a server on `host` (any 127.x address is loopback on Linux) until the block ends."""
    state: dict[str, Server] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            state["s"].hits.append((headers, body))
            status, extra = answer(headers) if answer else (200, {})
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    state["s"] = Server(url=f"http://{host}:{server.server_address[1]}/hook")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state["s"]
    finally:
        server.shutdown()
        server.server_close()


def status(code: int, **headers: str) -> Answer:
    """An answer: always `code`, with these headers."""
    return lambda _headers: (code, headers)


# -- database ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def factory(module_database: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(module_database)
    yield make_session_factory(engine)
    engine.dispose()


def settings_for(module_database: str, redis_url: str, allowed: str = "") -> Settings:
    return load_settings(
        DATABASE_URL=module_database,
        REDIS_URL=redis_url,
        webhook_timeout=2.0,
        webhook_schedule="0.2,0.2",
        allow_private_urls=allowed,
    )


@pytest.fixture
def tenant_id(factory: sessionmaker[Session]) -> str:
    with transaction(factory) as session:
        return create_tenant(session, new_id("t")).id


def add_endpoint(factory: sessionmaker[Session], tenant_id: str, url: str, **values: Any) -> str:
    """An endpoint row as it would be after creation (DNS may have changed since)."""
    with transaction(factory) as session:
        endpoint = WebhookEndpoint(
            id=new_id("whe"),
            tenant_id=tenant_id,
            url=url,
            events=[],
            secret=generate_secret(),
            disabled=False,
            **values,
        )
        session.add(endpoint)
    return endpoint.id


def add_delivery(
    factory: sessionmaker[Session], settings: Settings, tenant_id: str, endpoint_id: str, url: str
) -> tuple[str, str]:
    """A delivery of a fresh tenant event to one endpoint; returns (id, lease)."""
    with transaction(factory) as session:
        add_deliveries(
            session,
            tenant_id=tenant_id,
            job_id=None,
            event_id=new_id("evt"),
            event_type="batch.completed",
            body='{"type":"batch.completed","timestamp":"","data":{}}',
            targets=[Target(url, endpoint_id)],
            settings=settings,
        )
        row = session.scalars(
            select(Delivery).where(Delivery.endpoint_id == endpoint_id).order_by(Delivery.id.desc())
        ).first()
        assert row is not None and row.lease_id
        return row.id, row.lease_id


def attempt(
    factory: sessionmaker[Session],
    settings: Settings,
    delivery: tuple[str, str],
    limiter: TargetLimiter | None = None,
) -> Delivery:
    """One attempt through a guarded client with the settings' allowance; the row after it."""
    timeout = httpx.Timeout(settings.webhook_timeout)
    with guarded_client(settings.allow_private_urls, timeout=timeout) as client:
        deliveries.attempt_delivery(
            factory,
            *delivery,
            client=client,
            settings=settings,
            limiter=limiter or TargetLimiter(4),
        )
    with factory() as session:
        row = session.get(Delivery, delivery[0])
        assert row is not None
        return row


def attempts_of(factory: sessionmaker[Session], delivery_id: str) -> list[DeliveryAttempt]:
    with factory() as session:
        return list(
            session.scalars(
                select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
            )
        )


# -- SSRF ---------------------------------------------------------------------------------------


def test_private_addresses_are_refused_at_send_time_before_connecting(
    factory: sessionmaker[Session], module_database: str, redis_url: str, tenant_id: str
) -> None:
    settings = settings_for(module_database, redis_url)  # no private range allowed
    with serve() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        urls = {
            receiver.url: "loopback",
            f"http://localhost:{port}/hook": "loopback",
            f"http://[::1]:{port}/hook": "loopback",
            "http://10.0.0.1/hook": "private",
            "http://169.254.169.254/latest/meta-data": "link-local",
        }
        for url, kind in urls.items():
            endpoint_id = add_endpoint(factory, tenant_id, url)
            row = attempt(
                factory, settings, add_delivery(factory, settings, tenant_id, endpoint_id, url)
            )
            assert row.state == "failed", url  # a refused address is not retried
            assert row.error and row.error.startswith("refused:"), row.error
            assert f"({kind} address)" in row.error
            assert row.status_code is None
            [logged] = attempts_of(factory, row.id)
            assert logged.error == row.error
        # Nothing reached the loopback receiver; 10.0.0.1 and the metadata address were
        # refused from their literal before any socket was opened.
        assert receiver.hits == []


def test_redirects_are_never_followed(
    factory: sessionmaker[Session], module_database: str, redis_url: str, tenant_id: str
) -> None:
    settings = settings_for(module_database, redis_url, allowed="127.0.0.2/32")
    with serve("127.0.0.1") as private_target:
        for location in (private_target.url, "http://169.254.169.254/", "http://10.0.0.1/"):
            with serve("127.0.0.2", status(302, Location=location)) as redirector:
                endpoint_id = add_endpoint(factory, tenant_id, redirector.url)
                delivery = add_delivery(factory, settings, tenant_id, endpoint_id, redirector.url)
                row = attempt(factory, settings, delivery)
                assert len(redirector.hits) == 1
            assert row.status_code == 302
            assert row.error == "HTTP 302: redirects are not followed"
            assert row.state == "pending"  # a 3xx is a failure like any other, and retried
        assert private_target.hits == []


def test_endpoint_urls_are_checked_at_creation(
    factory: sessionmaker[Session], module_database: str, redis_url: str, tenant_id: str
) -> None:
    settings = settings_for(module_database, redis_url, allowed="127.0.0.2/32")
    app = create_app(settings)
    with transaction(factory) as session:
        from editqueue.models import Tenant

        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        key = create_api_key(session, tenant)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    refused = [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/hook",
        "ftp://127.0.0.2/hook",
    ]
    for url in refused:
        response = client.post("/v1/webhook-endpoints", json={"url": url}, headers=auth)
        assert response.status_code == 422, (url, response.json)
        assert response.json["errors"][0]["field"] == "url"
        assert "whsec_" not in response.get_data(as_text=True)
    allowed = client.post(
        "/v1/webhook-endpoints", json={"url": "http://127.0.0.2:9/hook"}, headers=auth
    )
    assert allowed.status_code == 201, allowed.json
    patched = client.patch(
        f"/v1/webhook-endpoints/{allowed.json['id']}",
        json={"url": "http://169.254.169.254/"},
        headers=auth,
    )
    assert patched.status_code == 422
    assert patched.json["errors"][0]["field"] == "url"


# -- signing, outcomes, endpoint health ----------------------------------------------------------


def test_rotation_signs_with_both_secrets_during_the_overlap(
    factory: sessionmaker[Session], module_database: str, redis_url: str, tenant_id: str
) -> None:
    settings = settings_for(module_database, redis_url, allowed="127.0.0.0/8")
    with serve() as receiver:
        endpoint_id = add_endpoint(factory, tenant_id, receiver.url)
        with transaction(factory) as session:
            endpoint = session.get(WebhookEndpoint, endpoint_id)
            assert endpoint is not None
            old = endpoint.secret
            new = rotate_endpoint_secret(
                endpoint, dt.datetime.now(dt.UTC), overlap=settings.webhook_rotation_overlap
            )
        row = attempt(
            factory, settings, add_delivery(factory, settings, tenant_id, endpoint_id, receiver.url)
        )
        assert row.state == "succeeded"
        with transaction(factory) as session:
            session.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == endpoint_id)
                .values(previous_secret_until=dt.datetime.now(dt.UTC))
            )
        attempt(
            factory, settings, add_delivery(factory, settings, tenant_id, endpoint_id, receiver.url)
        )
    (during, during_body), (after, after_body) = receiver.hits
    assert len(during["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(during_body, during)
    standardwebhooks.Webhook(new).verify(after_body, after)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(old).verify(after_body, after)


def test_retry_after_is_honoured_and_the_body_kept_short(
    factory: sessionmaker[Session], module_database: str, redis_url: str, tenant_id: str
) -> None:
    settings = settings_for(module_database, redis_url, allowed="127.0.0.0/8")
    with serve(answer=status(503, **{"Retry-After": "120"})) as receiver:
        endpoint_id = add_endpoint(factory, tenant_id, receiver.url)
        before = dt.datetime.now(dt.UTC)
        row = attempt(
            factory, settings, add_delivery(factory, settings, tenant_id, endpoint_id, receiver.url)
        )
    assert row.state == "pending" and row.attempt == 1 and row.status_code == 503
    assert row.next_attempt_at is not None
    assert row.next_attempt_at - before >= dt.timedelta(seconds=119)
    with factory() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None and endpoint.failing_since is not None


def test_410_disables_the_endpoint_and_tells_the_other_endpoints(
    factory: sessionmaker[Session], module_database: str, redis_url: str, tenant_id: str
) -> None:
    settings = settings_for(module_database, redis_url, allowed="127.0.0.0/8")
    with serve(answer=status(410)) as gone, serve() as healthy:
        gone_id = add_endpoint(factory, tenant_id, gone.url)
        healthy_id = add_endpoint(factory, tenant_id, healthy.url)
        row = attempt(
            factory, settings, add_delivery(factory, settings, tenant_id, gone_id, gone.url)
        )
    assert row.state == "failed" and row.status_code == 410
    with factory() as session:
        endpoint = session.get(WebhookEndpoint, gone_id)
        assert endpoint is not None and endpoint.disabled
        assert endpoint.disabled_reason == "the endpoint answered 410 Gone"
        [event] = session.scalars(
            select(TenantEvent).where(
                TenantEvent.tenant_id == tenant_id, TenantEvent.type == "webhook_endpoint.disabled"
            )
        )
        assert event.data["id"] == gone_id and "secret" not in event.data
        targets = session.scalars(select(Delivery.endpoint_id).where(Delivery.event_id == event.id))
        assert list(targets) == [healthy_id]
    # Deliveries still queued for the disabled endpoint end without being sent.
    leftover = add_delivery(factory, settings, tenant_id, gone_id, gone.url)
    assert attempt(factory, settings, leftover).state == "failed"
    assert attempts_of(factory, leftover[0]) == []


def test_an_endpoint_failing_for_five_days_is_disabled(
    factory: sessionmaker[Session], module_database: str, redis_url: str, tenant_id: str
) -> None:
    settings = settings_for(module_database, redis_url, allowed="127.0.0.0/8")
    six_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=6)
    with serve(answer=status(500)) as failing:
        endpoint_id = add_endpoint(factory, tenant_id, failing.url, failing_since=six_days_ago)
        attempt(
            factory, settings, add_delivery(factory, settings, tenant_id, endpoint_id, failing.url)
        )
    with factory() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None and endpoint.disabled
        assert endpoint.disabled_reason == "every delivery attempt failed for 5 days"


def test_success_clears_the_failure_run(
    factory: sessionmaker[Session], module_database: str, redis_url: str, tenant_id: str
) -> None:
    settings = settings_for(module_database, redis_url, allowed="127.0.0.0/8")
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with serve() as receiver:
        endpoint_id = add_endpoint(factory, tenant_id, receiver.url, failing_since=yesterday)
        attempt(
            factory, settings, add_delivery(factory, settings, tenant_id, endpoint_id, receiver.url)
        )
    with factory() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None and endpoint.failing_since is None


def test_a_full_target_puts_the_attempt_back_without_counting_it(
    factory: sessionmaker[Session], module_database: str, redis_url: str, tenant_id: str
) -> None:
    settings = settings_for(module_database, redis_url, allowed="127.0.0.0/8")
    with serve() as receiver:
        endpoint_id = add_endpoint(factory, tenant_id, receiver.url)
        limiter = TargetLimiter(1)
        assert limiter.try_acquire(endpoint_id) is not None  # an attempt to it is in flight
        delivery = add_delivery(factory, settings, tenant_id, endpoint_id, receiver.url)
        row = attempt(factory, settings, delivery, limiter=limiter)
        assert receiver.hits == []
    assert row.state == "pending" and row.attempt == 0
    assert row.next_attempt_at is not None and row.next_attempt_at > dt.datetime.now(dt.UTC)
    assert attempts_of(factory, row.id) == []


# -- jobs (tests/integration/test_batch_completion.py covers batch.completed) -------------------


def _running_job(
    job_id: str,
    tenant_id: str,
    batch_id: str | None = None,
    *,
    stage: str = "submit",
    next_poll_at: dt.datetime | None = None,
) -> Job:
    now = dt.datetime.now(dt.UTC)
    return Job(
        id=job_id,
        tenant_id=tenant_id,
        batch_id=batch_id,
        status="running",
        stage=stage,
        next_poll_at=next_poll_at,
        model="seededit-3.0",
        prompt="p",
        params={},
        provider_options={},
        inputs=[],
        outputs=[],
        attempts=1,
        poll_count=0,
        meta={},
        webhook_events=[],
        deadline_at=now + dt.timedelta(hours=1),
        created_at=now,
        started_at=now,
    )


def test_a_pending_delivery_follows_its_endpoints_new_url(
    factory: sessionmaker[Session], module_database: str, redis_url: str, tenant_id: str
) -> None:
    settings = settings_for(module_database, redis_url, allowed="127.0.0.0/8")
    with serve() as old, serve() as new:
        endpoint_id = add_endpoint(factory, tenant_id, old.url)
        delivery = add_delivery(factory, settings, tenant_id, endpoint_id, old.url)
        with transaction(factory) as session:
            session.execute(
                update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(url=new.url)
            )
        row = attempt(factory, settings, delivery)
        assert (len(old.hits), len(new.hits)) == (0, 1)
    assert row.state == "succeeded" and row.url == new.url
