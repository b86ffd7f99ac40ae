"""CORS on a real API process: preflights without a key, headers only for allowed origins."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import TenantClient, tenant_on
from tests.stack import Stack, api_only

ALLOWED = "https://app.example.com"
OTHER_ALLOWED = "http://localhost:3000"


@pytest.fixture(scope="module")
def cors_api(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {"EDITQUEUE_CORS_ORIGINS": f"{ALLOWED}, {OTHER_ALLOWED}/"}
    with api_only(database_url, redis_url, tmp_path_factory.mktemp("cors"), env) as stack:
        yield stack


@pytest.fixture
def cors_tenant(cors_api: Stack) -> Iterator[TenantClient]:
    with tenant_on(cors_api) as tenant:
        yield tenant


def _preflight(api: Stack, origin: str, path: str = "/v1/jobs") -> httpx.Response:
    return httpx.options(
        api.api_url + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


def test_preflight_from_an_allowed_origin_needs_no_key(cors_api: Stack) -> None:
    for origin, path in ((ALLOWED, "/v1/jobs"), (OTHER_ALLOWED, "/v1/jobs/job_x/cancel")):
        response = _preflight(cors_api, origin, path)
        assert response.status_code == 204, response.text
        assert response.headers["Access-Control-Allow-Origin"] == origin
        allowed_headers = response.headers["Access-Control-Allow-Headers"].lower()
        for header in ("authorization", "content-type", "idempotency-key", "prefer"):
            assert header in allowed_headers
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert int(response.headers["Access-Control-Max-Age"]) > 0
        assert "Access-Control-Allow-Credentials" not in response.headers


def test_other_origins_get_no_cors_headers(cors_api: Stack, cors_tenant: TenantClient) -> None:
    for origin in ("https://evil.example.com", "https://app.example.com.evil.test", "null"):
        preflight = _preflight(cors_api, origin)
        assert "Access-Control-Allow-Origin" not in preflight.headers
        answer = cors_tenant.client.get("/v1/jobs", headers={"Origin": origin})
        assert answer.status_code == 200
        assert "Access-Control-Allow-Origin" not in answer.headers
        assert "Origin" in answer.headers["Vary"]


def test_allowed_origin_sees_the_answer_and_its_headers(
    cors_api: Stack, cors_tenant: TenantClient
) -> None:
    answer = cors_tenant.client.get("/v1/jobs", headers={"Origin": ALLOWED})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Origin" in answer.headers["Vary"]
    exposed = answer.headers["Access-Control-Expose-Headers"]
    for header in ("Location", "RateLimit-Remaining", "Retry-After", "Idempotent-Replayed"):
        assert header in exposed
    # Errors are readable by the page too (a 401 problem it can show).
    refused = httpx.get(f"{cors_api.api_url}/v1/jobs", headers={"Origin": ALLOWED})
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_no_cors_without_configured_origins(stack: Stack, tenant: TenantClient) -> None:
    preflight = _preflight(stack, ALLOWED)
    assert "Access-Control-Allow-Origin" not in preflight.headers
    answer = tenant.client.get("/v1/jobs", headers={"Origin": ALLOWED})
    assert "Access-Control-Allow-Origin" not in answer.headers
