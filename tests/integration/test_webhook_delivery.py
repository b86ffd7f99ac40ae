"""Deliveries on the real stack (schedule compressed to 0.5,1,1,2 s): retries, log, replay."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from editqueue.config import load_settings
from editqueue.db import transaction
from editqueue.ids import new_id
from editqueue.infra.storage import open_storage
from editqueue.jobs import lifecycle
from editqueue.models import Batch, TenantEvent
from tests.conftest import Receiver, TenantClient, data_url, png_bytes, wait_until
from tests.integration.test_webhook_engine import _running_job
from tests.stack import Stack


def _endpoint(tenant: TenantClient, url: str, events: list[str]) -> dict:
    response = tenant.client.post("/v1/webhook-endpoints", json={"url": url, "events": events})
    assert response.status_code == 201, response.text
    return response.json()


def _job(tenant: TenantClient, **extra) -> dict:
    job = tenant.create_job(
        model="seededit-3.0", prompt="deliver", image=data_url(png_bytes()), **extra
    )
    return tenant.wait_job(job["id"])


def _log(tenant: TenantClient, endpoint_id: str, **query) -> list[dict]:
    response = tenant.client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", params=query)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_a_receiver_failing_three_times_gets_the_fourth_with_the_same_id(
    tenant: TenantClient, receiver: Receiver
) -> None:
    endpoint = _endpoint(tenant, receiver.url, ["job.succeeded"])
    receiver.responses = [500, 502, 503]
    job = _job(tenant)
    hooks = receiver.wait_for(4, timeout=30)
    assert len({h.headers["webhook-id"] for h in hooks}) == 1
    assert hooks[0].headers["webhook-id"].startswith("evt_")
    assert len({h.body for h in hooks}) == 1  # the same frozen body every time
    [entry] = wait_until(lambda: _log(tenant, endpoint["id"], state="succeeded"))
    assert entry["attempt"] == 4 and entry["status_code"] == 200 and entry["error"] is None
    assert entry["job_id"] == job["id"] and entry["endpoint_id"] == endpoint["id"]
    assert [a["status_code"] for a in entry["attempts"]] == [500, 502, 503, 200]
    assert [a["error"] for a in entry["attempts"]][:3] == ["HTTP 500", "HTTP 502", "HTTP 503"]
    assert all(a["response_body"] is not None for a in entry["attempts"])
    [from_job] = tenant.client.get(f"/v1/jobs/{job['id']}/deliveries").json()["data"]
    assert from_job["id"] == entry["id"]


def test_a_receiver_down_for_the_whole_schedule_is_recovered(
    tenant: TenantClient, receiver: Receiver
) -> None:
    endpoint = _endpoint(tenant, receiver.url, [])
    receiver.responses = [503] * 5  # the first attempt and all four retries
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    _job(tenant)
    [failed] = wait_until(lambda: _log(tenant, endpoint["id"], state="failed"), timeout=30)
    assert failed["attempt"] == 5 and failed["next_attempt_at"] is None
    assert len(receiver.requests) == 5
    assert _log(tenant, endpoint["id"], state="pending") == []

    response = tenant.client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/recover",
        json={"since": started.isoformat().replace("+00:00", "Z")},
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    hooks = receiver.wait_for(6)
    assert hooks[5].headers["webhook-id"] == hooks[0].headers["webhook-id"]
    [done] = wait_until(lambda: _log(tenant, endpoint["id"], state="succeeded"))
    assert done["id"] == failed["id"] and done["attempt"] == 6


def test_recover_only_takes_failures_since_the_given_time(
    tenant: TenantClient, receiver: Receiver
) -> None:
    endpoint = _endpoint(tenant, receiver.url, [])
    receiver.responses = [503] * 5
    _job(tenant)
    wait_until(lambda: _log(tenant, endpoint["id"], state="failed"), timeout=30)
    later = dt.datetime.now(dt.UTC).isoformat()
    path = f"/v1/webhook-endpoints/{endpoint['id']}/recover"
    assert tenant.client.post(path, json={"since": later}).status_code == 202
    tenant.client.patch(f"/v1/webhook-endpoints/{endpoint['id']}", json={"disabled": True})
    assert tenant.client.post(path, json={"since": later}).json()["code"] == "endpoint_disabled"
    assert len(receiver.requests) == 5
    assert _log(tenant, endpoint["id"], state="failed")


def test_retry_resends_the_jobs_latest_event_now(tenant: TenantClient, receiver: Receiver) -> None:
    job = _job(tenant, webhook_url=receiver.url)
    [first] = receiver.wait_for(1)
    wait_until(
        lambda: (
            tenant.client.get(f"/v1/jobs/{job['id']}/deliveries").json()["data"][0]["state"]
            == "succeeded"
        )
    )
    response = tenant.client.post(f"/v1/jobs/{job['id']}/deliveries/retry")
    assert response.status_code == 202, response.text
    [entry] = response.json()["data"]
    assert entry["event_type"] == "job.succeeded" and entry["state"] == "pending"
    second = receiver.wait_for(2)[1]
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.body == first.body
    [after] = wait_until(
        lambda: [
            d
            for d in tenant.client.get(f"/v1/jobs/{job['id']}/deliveries").json()["data"]
            if d["attempt"] == 2 and d["state"] == "succeeded"
        ]
    )
    assert [a["attempt"] for a in after["attempts"]] == [1, 2]


def test_retry_of_a_job_without_deliveries_reaches_endpoints_added_since(
    tenant: TenantClient, other_tenant: TenantClient, receiver: Receiver
) -> None:
    job = _job(tenant)
    assert tenant.client.get(f"/v1/jobs/{job['id']}/deliveries").json()["data"] == []
    _endpoint(tenant, receiver.url, [])
    assert other_tenant.client.post(f"/v1/jobs/{job['id']}/deliveries/retry").status_code == 404
    response = tenant.client.post(f"/v1/jobs/{job['id']}/deliveries/retry")
    assert response.status_code == 202
    [hook] = receiver.wait_for(1)
    assert hook.json()["type"] == "job.succeeded" and hook.json()["data"]["id"] == job["id"]


def test_batch_completed_is_delivered_once_when_the_last_job_ends(
    stack: Stack, tenant: TenantClient, receiver: Receiver, sessions: sessionmaker[Session]
) -> None:
    _endpoint(tenant, receiver.url, ["batch.completed"])
    settings = load_settings(webhook_timeout=3.0)
    storage = open_storage(f"file://{stack.storage_dir}", public_url="http://x", signing_key=b"k")
    with transaction(sessions) as session:
        batch = Batch(id=new_id("bat"), tenant_id=tenant.id, total=3, live_jobs=3, meta={})
        session.add(batch)
        session.flush()
        job_ids = [new_id("job") for _ in range(3)]
        for job_id in job_ids:
            session.add(_running_job(job_id, tenant.id, batch.id))
    for job_id, state in zip(job_ids, ("succeeded", "failed", "canceled"), strict=True):
        with transaction(sessions) as session:
            lifecycle.complete_job(
                session,
                job_id,
                state,
                storage=storage,
                settings=settings,
                outputs=[],
                from_statuses=("running",),
            )
    # Nobody publishes these outbox messages: the relay does, as after a crash.
    [hook] = receiver.wait_for(1, timeout=30)
    payload = hook.json()
    assert payload["type"] == "batch.completed"
    assert payload["data"]["id"] == batch.id and payload["data"]["job_ids"] == sorted(job_ids)
    assert payload["data"]["counts"]["total"] == 3 and payload["data"]["counts"]["canceled"] == 1
    with sessions() as session:
        assert session.get(Batch, batch.id).completed_at is not None
        events = select(func.count()).where(
            TenantEvent.tenant_id == tenant.id, TenantEvent.type == "batch.completed"
        )
        assert session.scalar(events) == 1
