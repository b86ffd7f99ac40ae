"""Vendor callbacks at the API: a KIE HMAC is enforced exactly when a key is set.

What a callback may and may not change is in test_callback_trust.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from editqueue.db import make_engine, make_session_factory
from editqueue.models import Job
from editqueue.standalone.embedded import EmbeddedRedis
from editqueue.standalone.ports import free_port
from tests.conftest import TenantClient, data_url, make_tenant, png_bytes, wait_until
from tests.integration.test_callback_trust import (
    finished_kie_record,
    settled_snapshot,
    snapshot,
    waiting_job,
)
from tests.stack import Stack, running_stack

KEY = "kie-hmac-test-key"


def _signed_headers(task_id: str, key: str) -> dict[str, str]:
    import base64
    import hashlib
    import hmac

    ts = str(int(time.time()))
    digest = hmac.new(key.encode(), f"{task_id}.{ts}".encode(), hashlib.sha256).digest()
    return {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": base64.b64encode(digest).decode()}


def test_kie_callbacks_must_carry_a_valid_hmac_when_a_key_is_set(
    private_database: str, tmp_path: Path
) -> None:
    redis_server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    redis_server.start()
    try:
        with running_stack(
            database_url=private_database,
            redis_url=redis_server.url,
            workdir=tmp_path / "stack",
            extra_env={"EDITQUEUE_KIE_WEBHOOK_KEY": KEY, "SANDBOX_KIE_WEBHOOK_KEY": KEY},
        ) as stack:
            engine = make_engine(private_database)
            sessions = make_session_factory(engine)
            tenant = make_tenant(sessions, stack.api_url)
            _refused_unless_signed(stack, tenant, sessions)
            # The sandbox signs its own callbacks with the same key: they are accepted.
            job = tenant.create_job(
                model="seedream-4.0-edit", prompt="signed", image=data_url(png_bytes())
            )
            assert tenant.wait_job(job["id"], timeout=40)["status"] == "succeeded"
            wait_until(lambda: stack.sandbox_stats()["kie"]["callbacks"].get("sent"))
            assert "failed" not in stack.sandbox_stats()["kie"]["callbacks"]
            tenant.client.close()
            engine.dispose()
    finally:
        redis_server.stop()


def _refused_unless_signed(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    """Unsigned and wrongly signed callbacks change nothing; a signed one wakes the job."""
    job = waiting_job(tenant, sessions, "kie", "seedream-4.0-edit")
    task_id = job.provider_task_id or ""
    body = {"code": 200, "msg": "ok", "data": finished_kie_record(stack, task_id)}
    url = f"{stack.api_url}/v1/callbacks/kie/{job.callback_token}"
    before = snapshot(sessions, job.id)
    unsigned = httpx.post(url, json=body)
    assert unsigned.status_code == 401
    assert unsigned.json()["code"] == "invalid_signature"
    forged = httpx.post(url, json=body, headers=_signed_headers(task_id, "wrong-key"))
    assert forged.status_code == 401
    assert snapshot(sessions, job.id) == before
    genuine = httpx.post(url, json=body, headers=_signed_headers(task_id, KEY))
    assert genuine.status_code == 200
    # Parked for an hour: only the signed callback can have finished it this soon.
    assert tenant.wait_job(job.id, timeout=15)["status"] == "succeeded"


def test_kie_callbacks_without_signature_are_accepted_when_no_key_is_set(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    job = tenant.create_job(model="seedream-4.0-edit", prompt="plain", image=data_url(png_bytes()))
    tenant.wait_job(job["id"])
    with sessions() as session:
        token, task_id = session.execute(
            select(Job.callback_token, Job.provider_task_id).where(Job.id == job["id"])
        ).one()
    body = {"code": 200, "msg": "ok", "data": {"taskId": task_id, "state": "success"}}
    wait_until(lambda: stack.sandbox_stats()["kie"]["callbacks"].get("sent"))
    before = settled_snapshot(sessions, job["id"])
    response = httpx.post(f"{stack.api_url}/v1/callbacks/kie/{token}", json=body)
    assert (response.status_code, response.json()) == (200, {"received": True})
    # The job has ended: acknowledged, and nothing written.
    assert snapshot(sessions, job["id"]) == before
