"""Per-key rate limits over real HTTP, shared by the API's two gunicorn workers via Redis."""

from __future__ import annotations

import logging
import time

import httpx
from sqlalchemy import update

from api.app import create_app
from editqueue.config import load_settings
from editqueue.db import transaction
from editqueue.models import ApiKey
from tests.conftest import TenantClient, fresh_get


def set_rate_limit(sessions, tenant: TenantClient, rate: int | None) -> None:
    with transaction(sessions) as session:
        session.execute(update(ApiKey).where(ApiKey.tenant_id == tenant.id).values(rate_limit=rate))


def test_a_burst_over_the_key_limit_gets_429_then_recovers(
    tenant: TenantClient, other_tenant: TenantClient, sessions
) -> None:
    set_rate_limit(sessions, tenant, 2)  # 2 requests/s, bursts of 4
    responses = [fresh_get(tenant) for _ in range(12)]
    statuses = [r.status_code for r in responses]
    allowed = statuses.count(200)
    # Per-process buckets would let each of the two workers pass a burst of its own.
    assert 4 <= allowed <= 6, statuses
    assert statuses[:4] == [200] * 4 and 429 in statuses

    ok = responses[0]
    assert ok.headers["RateLimit-Limit"] == "4"
    assert ok.headers["RateLimit-Remaining"] == "3"
    assert int(ok.headers["RateLimit-Reset"]) >= 1
    assert ok.headers["RateLimit-Policy"] == "4;w=2"

    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert refused.headers["RateLimit-Limit"] == "4"
    assert refused.headers["RateLimit-Remaining"] == "0"
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    assert int(refused.headers["RateLimit-Reset"]) >= 1

    # Another key has its own bucket.
    assert fresh_get(other_tenant).status_code == 200

    time.sleep(retry_after)
    assert fresh_get(tenant).status_code == 200


def test_default_limit_headers_on_normal_responses(tenant: TenantClient) -> None:
    response = fresh_get(tenant)
    assert response.status_code == 200
    assert response.headers["RateLimit-Limit"] == "100"  # EDITQUEUE_RATE_LIMIT default 50/s ×2
    assert response.headers["RateLimit-Policy"] == "100;w=2"
    # Unauthenticated routes are not counted.
    assert "RateLimit-Limit" not in httpx.get(f"{tenant.client.base_url}/healthz").headers


def test_a_key_with_limit_zero_is_not_limited(tenant: TenantClient, sessions) -> None:
    set_rate_limit(sessions, tenant, 0)
    response = fresh_get(tenant)
    assert response.status_code == 200 and "RateLimit-Limit" not in response.headers


def test_unreachable_redis_fails_open(database_url: str, tmp_path, tenant, caplog) -> None:
    settings = load_settings(
        DATABASE_URL=database_url,
        REDIS_URL="redis://127.0.0.1:9/0",  # nothing listens on the discard port
        storage_url=f"file://{tmp_path}",
    )
    app = create_app(settings)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {tenant.key}"}
    with caplog.at_level(logging.WARNING, logger="api.rate_limit"):
        started = time.monotonic()
        responses = [client.get("/v1/jobs", headers=auth) for _ in range(5)]
        elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [200] * 5
    assert "RateLimit-Limit" not in responses[0].headers
    assert elapsed < 3  # one failed connect, then Redis is skipped for a while
    assert "api.rate_limit.suspended" in caplog.text
    assert tenant.key not in caplog.text


def test_429_is_documented_on_authenticated_operations(stack) -> None:
    spec = httpx.get(f"{stack.api_url}/openapi.json").json()
    assert "429" in spec["paths"]["/v1/jobs"]["get"]["responses"]
    assert "429" in spec["paths"]["/v1/batches"]["post"]["responses"]
    unauthenticated = [
        op for path in spec["paths"].values() for op in path.values() if "security" not in op
    ]
    assert unauthenticated and all("429" not in op["responses"] for op in unauthenticated)


def test_a_cached_key_is_counted_once_per_request(
    database_url: str, redis_url: str, tmp_path, tenant: TenantClient, sessions
) -> None:
    # One process: after the first request the key's owner is cached, and auth's lookup
    # counts the request in the same script that reads the key generation. Counted twice,
    # only 2 of the burst of 4 would pass.
    set_rate_limit(sessions, tenant, 2)
    settings = load_settings(
        DATABASE_URL=database_url, REDIS_URL=redis_url, storage_url=f"file://{tmp_path}"
    )
    client = create_app(settings).test_client()
    auth = {"Authorization": f"Bearer {tenant.key}"}
    responses = [client.get("/v1/jobs", headers=auth) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 4 + [429] * 2
    assert [r.headers["RateLimit-Remaining"] for r in responses[:4]] == ["3", "2", "1", "0"]
