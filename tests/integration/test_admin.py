"""The operator API (/v1/admin) on real API processes: off by default, its own key, quotas
and keys, and a revoked key refused at once by every gunicorn worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from editqueue.standalone import processes
from editqueue.standalone.supervisor import wait_for_http
from tests.stack import Stack, create_database, drop_database

ADMIN_KEY = "admin-test-key-0123456789"


def start_api(database_url: str, redis_url: str, workdir: Path, extra_env: dict[str, str]) -> Stack:
    """Only an API (two gunicorn workers, as in production), no worker or beat."""
    stack = Stack(
        database_url=database_url, redis_url=redis_url, workdir=workdir, extra_env=extra_env
    )
    stack.workdir.mkdir(parents=True, exist_ok=True)
    stack._spawn("api", processes.api_argv(f"127.0.0.1:{stack.api_port}", workers=2, quiet=True))
    try:
        wait_for_http(f"{stack.api_url}/healthz", timeout=60)
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def admin_api(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    url = create_database(database_url)
    stack = start_api(
        url, redis_url, tmp_path_factory.mktemp("admin"), {"EDITQUEUE_ADMIN_KEY": ADMIN_KEY}
    )
    try:
        yield stack
    finally:
        stack.stop()
        drop_database(url)


@pytest.fixture
def admin(admin_api: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=admin_api.api_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    ) as client:
        yield client


def _tenant_with_key(admin: httpx.Client, name: str) -> tuple[dict, dict]:
    tenant = admin.post("/v1/admin/tenants", json={"name": name})
    assert tenant.status_code == 201, tenant.text
    key = admin.post(f"/v1/admin/tenants/{tenant.json()['id']}/keys", json={})
    assert key.status_code == 201, key.text
    return tenant.json(), key.json()


def _as(api: Stack, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=api.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def test_admin_api_is_absent_without_a_key(stack: Stack, tenant) -> None:
    for path in ("/v1/admin/tenants", f"/v1/admin/tenants/{tenant.id}", "/v1/admin"):
        anonymous = httpx.get(stack.api_url + path)
        assert anonymous.status_code == 404, (path, anonymous.text)
        # A tenant's own key opens nothing there either.
        assert tenant.client.get(path).status_code == 404
    spec = httpx.get(f"{stack.api_url}/openapi.json").json()
    assert not [p for p in spec["paths"] if p.startswith("/v1/admin")]


def test_admin_api_refuses_wrong_keys_with_a_problem(admin_api: Stack, admin) -> None:
    _, key = _tenant_with_key(admin, "refused-tenant")
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {ADMIN_KEY}x"},
        {"Authorization": f"Bearer {key['key']}"},  # a tenant key is not an operator key
    ):
        response = httpx.get(f"{admin_api.api_url}/v1/admin/tenants", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["code"] == "unauthorized"
    # ...and the operator key is no tenant key.
    response = httpx.get(
        f"{admin_api.api_url}/v1/jobs", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert response.status_code == 401


def test_tenants_list_show_and_patch(admin_api: Stack, admin) -> None:
    tenant, _ = _tenant_with_key(admin, "quota-tenant")
    assert tenant["max_running_jobs"] is None and tenant["rate_limit"] is None
    assert "webhook_secret" not in tenant
    names = [t["name"] for t in admin.get("/v1/admin/tenants").json()["data"]]
    assert "quota-tenant" in names
    patched = admin.patch(
        f"/v1/admin/tenants/{tenant['id']}", json={"max_running_jobs": 3, "rate_limit": 7}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["max_running_jobs"] == 3 and patched.json()["rate_limit"] == 7
    # Fields not sent stay; null restores the default.
    again = admin.patch(f"/v1/admin/tenants/{tenant['id']}", json={"rate_limit": None})
    assert again.json()["max_running_jobs"] == 3 and again.json()["rate_limit"] is None
    shown = admin.get(f"/v1/admin/tenants/{tenant['id']}").json()
    assert shown == again.json()
    assert admin.get("/v1/admin/tenants/ten_nope").status_code == 404
    duplicate = admin.post("/v1/admin/tenants", json={"name": "quota-tenant"})
    assert duplicate.status_code == 409


def test_patch_refuses_bad_and_unknown_fields(admin_api: Stack, admin) -> None:
    tenant, _ = _tenant_with_key(admin, "strict-tenant")
    for body in (
        {"max_running_jobs": 0},
        {"rate_limit": -1},
        {"rate_limit": "fast"},
        {"monthly_budget": -1},
        {"monthly_budget": "lots"},
        {"monthly_budget": "1.0000001"},
        {"budget_alert_ratio": 0},
        {"budget_alert_ratio": 1.5},
        {"retention_days": 0},
        {"unknown_field": 1},
    ):
        response = admin.patch(f"/v1/admin/tenants/{tenant['id']}", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"


def test_tenant_rate_limit_applies_to_its_keys_at_once(admin_api: Stack, admin) -> None:
    tenant, key = _tenant_with_key(admin, "rated-tenant")
    with _as(admin_api, key["key"]) as client:
        assert client.get("/v1/jobs").headers["RateLimit-Limit"] == "100"  # 2 × the default 50
        admin.patch(f"/v1/admin/tenants/{tenant['id']}", json={"rate_limit": 5})
        for _ in range(4):
            assert client.get("/v1/jobs").headers["RateLimit-Limit"] == "10"


def test_keys_are_shown_once_and_listed_without_secrets(admin_api: Stack, admin) -> None:
    tenant, key = _tenant_with_key(admin, "keyed-tenant")
    assert key["key"].startswith("eq_") and key["key"].startswith(key["prefix"])
    listed = admin.get(f"/v1/admin/tenants/{tenant['id']}/keys").json()["data"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert set(listed[0]) == {"id", "tenant_id", "prefix", "rate_limit", "created_at", "revoked_at"}
    assert key["key"] not in admin.get(f"/v1/admin/tenants/{tenant['id']}/keys").text
    with _as(admin_api, key["key"]) as client:
        assert client.get("/v1/jobs").status_code == 200
    rated = admin.post(f"/v1/admin/tenants/{tenant['id']}/keys", json={"rate_limit": 3})
    assert rated.json()["rate_limit"] == 3
    assert admin.post("/v1/admin/tenants/ten_nope/keys", json={}).status_code == 404


def test_revoked_key_fails_at_once_on_every_worker(admin_api: Stack, admin) -> None:
    _, key = _tenant_with_key(admin, "revoked-tenant")
    with _as(admin_api, key["key"]) as client:
        # Fill the owner cache of both gunicorn workers (new connections spread over them).
        for _ in range(30):
            assert (
                httpx.get(
                    f"{admin_api.api_url}/v1/jobs",
                    headers={"Authorization": f"Bearer {key['key']}"},
                ).status_code
                == 200
            )
        revoked = admin.post(f"/v1/admin/keys/{key['id']}/revoke")
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] is not None
        statuses = [
            httpx.get(
                f"{admin_api.api_url}/v1/jobs", headers={"Authorization": f"Bearer {key['key']}"}
            ).status_code
            for _ in range(30)
        ]
        statuses.append(client.get("/v1/jobs").status_code)  # a kept-alive connection too
    assert set(statuses) == {401}
    # Revoking again keeps the first time.
    again = admin.post(f"/v1/admin/keys/{key['id']}/revoke")
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert admin.post("/v1/admin/keys/key_nope/revoke").status_code == 404


def test_rotate_issues_a_new_key_and_revokes_the_old_at_once(admin_api: Stack, admin) -> None:
    tenant, key = _tenant_with_key(admin, "rotated-tenant")
    with _as(admin_api, key["key"]) as old_client:
        assert old_client.get("/v1/jobs").status_code == 200
        rotated = admin.post(f"/v1/admin/keys/{key['id']}/rotate")
        assert rotated.status_code == 201, rotated.text
        body = rotated.json()
        assert body["revoked"]["id"] == key["id"] and body["revoked"]["revoked_at"]
        assert body["key"]["key"] != key["key"] and body["key"]["tenant_id"] == tenant["id"]
        assert old_client.get("/v1/jobs").status_code == 401
    with _as(admin_api, body["key"]["key"]) as new_client:
        assert new_client.get("/v1/jobs").status_code == 200
    # A revoked key is not brought back by rotating it.
    assert admin.post(f"/v1/admin/keys/{key['id']}/rotate").status_code == 409


def test_openapi_documents_the_admin_api(admin_api: Stack) -> None:
    spec = httpx.get(f"{admin_api.api_url}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["adminKey"]["scheme"] == "bearer"
    for path, method in (
        ("/v1/admin/tenants", "get"),
        ("/v1/admin/tenants", "post"),
        ("/v1/admin/tenants/{tenant_id}", "get"),
        ("/v1/admin/tenants/{tenant_id}", "patch"),
        ("/v1/admin/tenants/{tenant_id}/keys", "get"),
        ("/v1/admin/tenants/{tenant_id}/keys", "post"),
        ("/v1/admin/keys/{key_id}/revoke", "post"),
        ("/v1/admin/keys/{key_id}/rotate", "post"),
    ):
        op = spec["paths"][path][method]
        assert op["security"] == [{"adminKey": []}], path
        assert op["summary"] and "429" not in op["responses"]
