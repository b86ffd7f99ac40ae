"""Operator guards on a real API process: the endpoint quota and the `/metrics` token."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TenantClient, tenant_on
from tests.stack import Stack, api_only

METRICS_TOKEN = "metrics-test-token"
MAX_ENDPOINTS = 3


@pytest.fixture(scope="module")
def guarded_api(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Only the API (no worker needed), with a metrics token and a small endpoint quota."""
    env = {
        "EDITQUEUE_METRICS_TOKEN": METRICS_TOKEN,
        "EDITQUEUE_MAX_WEBHOOK_ENDPOINTS": str(MAX_ENDPOINTS),
    }
    workdir = tmp_path_factory.mktemp("guarded")
    with api_only(database_url, redis_url, workdir, env) as stack:
        yield stack


@pytest.fixture
def guarded_tenant(guarded_api: Stack) -> Iterator[TenantClient]:
    with tenant_on(guarded_api) as tenant:
        yield tenant


def _create(tenant: TenantClient, index: int) -> httpx.Response:
    body = {"url": f"http://127.0.0.1:9/hooks/{index}", "events": ["job.succeeded"]}
    return tenant.client.post("/v1/webhook-endpoints", json=body)


def _endpoint_ids(tenant: TenantClient) -> list[str]:
    return [e["id"] for e in tenant.client.get("/v1/webhook-endpoints").json()["data"]]


def test_endpoints_beyond_the_quota_are_refused_with_a_problem(
    guarded_tenant: TenantClient,
) -> None:
    created = [_create(guarded_tenant, i) for i in range(MAX_ENDPOINTS)]
    assert [r.status_code for r in created] == [201] * MAX_ENDPOINTS
    refused = _create(guarded_tenant, 99)
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "endpoint_limit_reached"
    assert str(MAX_ENDPOINTS) in refused.json()["detail"]
    assert len(_endpoint_ids(guarded_tenant)) == MAX_ENDPOINTS
    # Deleting one makes room again.
    first = created[0].json()["id"]
    assert guarded_tenant.client.delete(f"/v1/webhook-endpoints/{first}").status_code == 204
    assert _create(guarded_tenant, 100).status_code == 201


def test_concurrent_creates_never_pass_the_quota(guarded_tenant: TenantClient) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: _create(guarded_tenant, i), range(12)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(201) == MAX_ENDPOINTS
    assert set(statuses) == {201, 409}
    assert len(_endpoint_ids(guarded_tenant)) == MAX_ENDPOINTS


def test_the_quota_is_per_tenant(guarded_api: Stack, guarded_tenant: TenantClient) -> None:
    for i in range(MAX_ENDPOINTS):
        assert _create(guarded_tenant, i).status_code == 201
    with tenant_on(guarded_api) as other:
        assert _create(other, 0).status_code == 201


def test_metrics_need_the_configured_bearer_token(guarded_api: Stack) -> None:
    url = f"{guarded_api.api_url}/metrics"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    ok = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200
    assert METRICS_TOKEN not in ok.text
    assert "editqueue_jobs" in {f.name for f in text_string_to_metric_families(ok.text)}


def test_metrics_content_type_names_its_charset_once(guarded_api: Stack) -> None:
    response = httpx.get(
        f"{guarded_api.api_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    content_type = response.headers["content-type"]
    assert content_type.lower().count("charset") == 1, content_type
    assert content_type.startswith("text/plain; version=0.0.4")


def test_an_unset_token_leaves_metrics_open(stack: Stack) -> None:
    assert httpx.get(f"{stack.api_url}/metrics").status_code == 200
