"""Secrets stay secret: keys stored hashed, never echoed in errors, events or logs."""

from __future__ import annotations

import httpx
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from editqueue.models import ApiKey, Job
from tests.conftest import TenantClient, data_url, png_bytes
from tests.stack import Stack


def test_api_keys_are_stored_only_as_a_digest(
    tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        stored = session.scalars(select(ApiKey.key_hash).where(ApiKey.tenant_id == tenant.id))
        digests = list(stored)
        dump = session.execute(text("SELECT row_to_json(k)::text FROM api_keys k")).scalars()
        everything = "".join(dump)
    assert len(digests) == 1 and len(digests[0]) == 64
    assert tenant.key not in everything
    assert tenant.key[10:] not in everything


def test_a_wrong_key_is_not_echoed_back(stack: Stack) -> None:
    guess = "eq_" + "A" * 43
    response = httpx.get(f"{stack.api_url}/v1/jobs", headers={"Authorization": f"Bearer {guess}"})
    assert response.status_code == 401
    assert guess not in response.text


def test_events_and_job_bodies_carry_no_secrets(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    job = tenant.create_job(
        model="seedream-4.0-edit", prompt="secretless", image=data_url(png_bytes())
    )
    tenant.wait_job(job["id"])
    with sessions() as session:
        token = session.scalar(select(Job.callback_token).where(Job.id == job["id"]))
    visible = (
        tenant.client.get(f"/v1/jobs/{job['id']}").text
        + tenant.client.get(f"/v1/jobs/{job['id']}/events").text
    )
    for secret in (tenant.key, tenant.secret, token, "sandbox-key"):
        assert secret not in visible
    logs = stack.log("worker") + stack.log("api")
    for secret in (tenant.key, tenant.secret, token):
        assert secret not in logs
