"""Webhook endpoints over real HTTP: CRUD, validation, isolation, secrets and rotation."""

from __future__ import annotations

import httpx
import standardwebhooks

from tests.conftest import Receiver, TenantClient, data_url, png_bytes
from tests.stack import Stack


def create_endpoint(tenant: TenantClient, **body) -> dict:
    response = tenant.client.post("/v1/webhook-endpoints", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem
    return problem


def test_create_get_update_delete(tenant: TenantClient, receiver: Receiver) -> None:
    response = tenant.client.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url, "events": ["job.succeeded"], "description": "orders"},
    )
    assert response.status_code == 201
    created = response.json()
    assert response.headers["Location"] == f"/v1/webhook-endpoints/{created['id']}"
    assert created["id"].startswith("whe_")
    assert created["secret"].startswith("whsec_")
    assert created["object"] == "webhook_endpoint"
    assert (created["url"], created["events"], created["disabled"]) == (
        receiver.url,
        ["job.succeeded"],
        False,
    )
    path = f"/v1/webhook-endpoints/{created['id']}"
    fetched = tenant.client.get(path).json()
    assert "secret" not in fetched  # reads never carry the secret...
    assert tenant.client.get(f"{path}/secret").json() == {
        "secret": created["secret"]
    }  # ...this does

    patched = tenant.client.patch(path, json={"events": [], "description": None})
    assert patched.status_code == 200, patched.text
    assert patched.json()["events"] == [] and patched.json()["description"] is None
    off = tenant.client.patch(path, json={"disabled": True}).json()
    assert off["disabled"] and off["disabled_reason"] == "disabled through the API"
    on = tenant.client.patch(path, json={"disabled": False}).json()
    assert not on["disabled"] and on["disabled_reason"] is None

    assert tenant.client.delete(path).status_code == 204
    assert_problem(tenant.client.get(path), 404)


def test_bad_input_is_422_with_the_field(tenant: TenantClient, receiver: Receiver) -> None:
    post = tenant.client.post
    assert_problem(post("/v1/webhook-endpoints", json={}), 422, "url")
    assert_problem(post("/v1/webhook-endpoints", json={"url": receiver.url, "x": 1}), 422, "x")
    bad_event = {"url": receiver.url, "events": ["job.exploded"]}
    assert_problem(post("/v1/webhook-endpoints", json=bad_event), 422, "events[0]")
    assert_problem(post("/v1/webhook-endpoints", json={"url": "http://10.0.0.1/"}), 422, "url")
    problem = assert_problem(
        post("/v1/webhook-endpoints", json={"url": "http://169.254.169.254/"}), 422, "url"
    )
    assert "link-local" in problem["detail"]
    malformed = post(
        "/v1/webhook-endpoints", content=b"{", headers={"content-type": "application/json"}
    )
    assert_problem(malformed, 400)
    path = f"/v1/webhook-endpoints/{create_endpoint(tenant, url=receiver.url)['id']}"
    assert_problem(tenant.client.patch(path, json={"url": None}), 422, "url")
    assert_problem(tenant.client.patch(path, json={"disabled": "no"}), 422, "disabled")
    assert_problem(tenant.client.get("/v1/webhook-endpoints?limit=0"), 422, "limit")
    assert_problem(tenant.client.get("/v1/webhook-endpoints?cursor=nope"), 422, "cursor")
    assert_problem(tenant.client.get(f"{path}/deliveries?state=lost"), 422, "state")
    assert_problem(tenant.client.post(f"{path}/recover", json={"since": "yesterday"}), 422, "since")


def test_another_tenants_endpoint_is_404(
    tenant: TenantClient, other_tenant: TenantClient, receiver: Receiver
) -> None:
    path = f"/v1/webhook-endpoints/{create_endpoint(tenant, url=receiver.url)['id']}"
    other = other_tenant.client
    for response in (
        other.get(path),
        other.get(f"{path}/secret"),
        other.patch(path, json={"description": "mine"}),
        other.delete(path),
        other.post(f"{path}/rotate-secret"),
        other.get(f"{path}/deliveries"),
        other.post(f"{path}/recover", json={"since": "2020-01-01T00:00:00Z"}),
    ):
        problem = assert_problem(response, 404)
        assert "whsec_" not in response.text, problem
    assert other.get("/v1/webhook-endpoints").json()["data"] == []
    assert tenant.client.get(path).status_code == 200


def test_list_is_cursor_paged_newest_first(tenant: TenantClient, receiver: Receiver) -> None:
    ids = [create_endpoint(tenant, url=f"{receiver.url}/{i}")["id"] for i in range(3)]
    first = tenant.client.get("/v1/webhook-endpoints?limit=2").json()
    assert [e["id"] for e in first["data"]] == ids[::-1][:2]
    assert all("secret" not in e for e in first["data"])
    second = tenant.client.get(f"/v1/webhook-endpoints?limit=2&cursor={first['next_cursor']}")
    assert [e["id"] for e in second.json()["data"]] == [ids[0]]
    assert second.json()["next_cursor"] is None


def test_every_route_is_in_the_openapi_document(stack: Stack) -> None:
    paths = httpx.get(f"{stack.api_url}/openapi.json").json()["paths"]
    assert set(paths["/v1/webhook-endpoints"]) == {"get", "post"}
    assert set(paths["/v1/webhook-endpoints/{endpoint_id}"]) == {"get", "patch", "delete"}
    for path in (
        "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
        "/v1/webhook-endpoints/{endpoint_id}/recover",
        "/v1/jobs/{job_id}/deliveries/retry",
    ):
        assert "post" in paths[path]
    for path in ("/v1/webhook-endpoints/{endpoint_id}/deliveries", "/v1/jobs/{job_id}/deliveries"):
        assert "get" in paths[path]


def _run_job(tenant: TenantClient, **extra) -> dict:
    job = tenant.create_job(
        model="seededit-3.0", prompt="hooks", image=data_url(png_bytes()), **extra
    )
    return tenant.wait_job(job["id"])


def test_endpoint_deliveries_are_signed_with_its_secret_and_both_during_rotation(
    tenant: TenantClient, receiver: Receiver
) -> None:
    endpoint = create_endpoint(tenant, url=receiver.url, events=["job.started", "job.succeeded"])
    job = _run_job(tenant)
    hooks = receiver.wait_for(2)
    assert sorted(h.json()["type"] for h in hooks) == ["job.started", "job.succeeded"]
    for hook in hooks:
        payload = standardwebhooks.Webhook(endpoint["secret"]).verify(hook.body, hook.headers)
        assert payload["data"]["id"] == job["id"]

    rotated = tenant.client.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret").json()
    assert rotated["secret"] != endpoint["secret"]
    _run_job(tenant)
    during = receiver.wait_for(4)[2:]
    for hook in during:
        assert len(hook.headers["webhook-signature"].split(" ")) == 2
        for secret in (endpoint["secret"], rotated["secret"]):
            standardwebhooks.Webhook(secret).verify(hook.body, hook.headers)


def test_per_job_urls_use_the_default_secret_and_its_rotation(
    tenant: TenantClient, receiver: Receiver
) -> None:
    old = tenant.client.get("/v1/webhooks/secret").json()["secret"]
    new = tenant.client.post("/v1/webhooks/secret/rotate").json()["secret"]
    assert new != old and tenant.client.get("/v1/webhooks/secret").json()["secret"] == new
    _run_job(tenant, webhook_url=receiver.url)
    [hook] = receiver.wait_for(1)
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(hook.body, hook.headers)
