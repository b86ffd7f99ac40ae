"""The jobs API over real HTTP: create (JSON and multipart), get, list, cancel, events."""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from editqueue.db import transaction
from editqueue.models import Job
from tests.conftest import TenantClient, data_url, png_bytes


def seededit_body(**extra):
    return {
        "model": "seededit-3.0",
        "prompt": "make it snowy",
        "image": data_url(png_bytes()),
        **extra,
    }


def test_create_returns_202_with_location_and_job(tenant: TenantClient) -> None:
    response = tenant.client.post("/v1/jobs", json=seededit_body(metadata={"sku": "A1"}))
    assert response.status_code == 202
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["id"].startswith("job_")
    assert job["object"] == "job"
    assert job["status"] in ("queued", "running", "succeeded")
    assert job["model"] == "seededit-3.0"
    assert job["params"] == {
        "size": "adaptive",
        "seed": -1,
        "guidance_scale": 5.5,
        "watermark": False,
    }
    assert job["metadata"] == {"sku": "A1"}
    assert job["webhook_events"] == ["job.succeeded", "job.failed", "job.canceled"]
    assert job["inputs"][0]["sha256"] == hashlib.sha256(png_bytes()).hexdigest()
    assert job["created_at"].endswith("Z")
    assert job["deadline_at"] > job["created_at"]


def test_alias_resolves_to_canonical_model(tenant: TenantClient) -> None:
    job = tenant.create_job(**seededit_body(model="doubao-seededit-3-0-i2i-250628"))
    assert job["model"] == "seededit-3.0"


def test_multipart_create_stores_the_uploaded_image(tenant: TenantClient) -> None:
    image = png_bytes((400, 300), seed=3)
    response = tenant.client.post(
        "/v1/jobs",
        data={"model": "seedream-4.0-edit", "prompt": "autumn", "aspect_ratio": "4:3", "n": "1"},
        files={"image": ("in.png", image, "image/png")},
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["params"]["aspect_ratio"] == "4:3"
    assert job["inputs"][0]["sha256"] == hashlib.sha256(image).hexdigest()
    # The input link is a signed link to our stored copy.
    stored = httpx.get(job["inputs"][0]["url"])
    assert stored.status_code == 200 and stored.content == image


def test_get_unknown_and_foreign_jobs_are_404(
    tenant: TenantClient, other_tenant: TenantClient
) -> None:
    job = tenant.create_job(**seededit_body())
    assert tenant.client.get(f"/v1/jobs/{job['id']}").status_code == 200
    foreign = other_tenant.client.get(f"/v1/jobs/{job['id']}")
    assert foreign.status_code == 404
    assert foreign.headers["content-type"] == "application/problem+json"
    assert other_tenant.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 404
    assert other_tenant.client.get(f"/v1/jobs/{job['id']}/events").status_code == 404
    listed = other_tenant.client.get("/v1/jobs").json()["data"]
    assert job["id"] not in [j["id"] for j in listed]
    assert tenant.client.get("/v1/jobs/job_doesnotexist").status_code == 404


def test_missing_or_wrong_key_is_401(stack) -> None:
    assert httpx.get(f"{stack.api_url}/v1/jobs").status_code == 401
    wrong = httpx.get(f"{stack.api_url}/v1/jobs", headers={"Authorization": "Bearer eq_nope"})
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "unauthorized"


def test_list_pages_newest_first_with_a_stable_cursor(tenant: TenantClient) -> None:
    ids = [tenant.create_job(**seededit_body(metadata={"n": str(i)}))["id"] for i in range(5)]
    page1 = tenant.client.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page1["data"]] == ids[::-1][:2]
    # A job created between pages must not shift the next page.
    tenant.create_job(**seededit_body())
    page2 = tenant.client.get(
        "/v1/jobs", params={"limit": 2, "cursor": page1["next_cursor"]}
    ).json()
    assert [j["id"] for j in page2["data"]] == ids[::-1][2:4]
    page3 = tenant.client.get(
        "/v1/jobs", params={"limit": 2, "cursor": page2["next_cursor"]}
    ).json()
    assert [j["id"] for j in page3["data"]] == ids[::-1][4:]
    assert page3["next_cursor"] is None


def test_list_filters(tenant: TenantClient) -> None:
    a = tenant.create_job(**seededit_body(metadata={"campaign": "spring", "sku": "1"}))
    b = tenant.create_job(**seededit_body(metadata={"campaign": "spring", "sku": "2"}))
    tenant.client.post(f"/v1/jobs/{b['id']}/cancel")
    params = {"metadata[campaign]": "spring", "metadata[sku]": "1"}
    assert [j["id"] for j in tenant.client.get("/v1/jobs", params=params).json()["data"]] == [
        a["id"]
    ]
    canceled = tenant.client.get("/v1/jobs", params={"status": "canceled"}).json()["data"]
    assert [j["id"] for j in canceled] == [b["id"]]
    both = tenant.client.get("/v1/jobs", params={"status": "canceled,queued,running,succeeded"})
    assert {a["id"], b["id"]} <= {j["id"] for j in both.json()["data"]}
    by_alias = tenant.client.get("/v1/jobs", params={"model": "spark_edit_3_0_i2i"}).json()
    assert len(by_alias["data"]) == 2
    assert tenant.client.get("/v1/jobs", params={"model": "seedream-4.0-edit"}).json()["data"] == []
    future = tenant.client.get("/v1/jobs", params={"created_after": "2999-01-01T00:00:00Z"})
    assert future.json()["data"] == []
    past = tenant.client.get("/v1/jobs", params={"created_before": "2000-01-01T00:00:00Z"})
    assert past.json()["data"] == []
    assert tenant.client.get("/v1/jobs", params={"provider": "ark"}).status_code == 200


def test_cancel_then_cancel_again_is_409(tenant: TenantClient) -> None:
    job = tenant.create_job(
        **seededit_body(provider_options={"_sandbox": {"fault": "latency", "seconds": 3}})
    )
    canceled = tenant.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    again = tenant.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["code"] == "job_finished"
    # The late vendor result is discarded: the job stays canceled.
    time.sleep(4)
    assert tenant.client.get(f"/v1/jobs/{job['id']}").json()["status"] == "canceled"
    types = [e["type"] for e in tenant.events(job["id"])]
    assert types.count("job.canceled") == 1
    assert "job.succeeded" not in types


def test_idempotency_key_replays_and_refuses_a_different_body(tenant: TenantClient) -> None:
    body = seededit_body(prompt="idempotent")
    headers = {"Idempotency-Key": "order-42"}
    first = tenant.client.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == 202
    again = tenant.client.post("/v1/jobs", json=body, headers=headers)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = tenant.client.post("/v1/jobs", json={**body, "prompt": "different"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


def _reordered(value):
    """The same JSON value with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    return value


def _post_text(tenant: TenantClient, path: str, text: str, key: str) -> httpx.Response:
    headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
    return tenant.client.post(path, content=text.encode(), headers=headers)


def test_idempotency_compares_the_parsed_body_not_its_bytes(tenant: TenantClient) -> None:
    body = seededit_body(prompt="café au lait", metadata={"a": "1", "b": "2"}, seed=7)
    first = _post_text(tenant, "/v1/jobs", json.dumps(body), "canon-1")
    assert first.status_code == 202, first.text
    # Other key order (nested too), other whitespace, non-ASCII unescaped: the same body.
    text = json.dumps(_reordered(body), indent=3, ensure_ascii=False)
    assert text != json.dumps(body)
    again = _post_text(tenant, "/v1/jobs", text, "canon-1")
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    # A value that differs is another request, however it is written.
    changed = {**body, "metadata": {"b": "2", "a": "one"}}
    other = _post_text(tenant, "/v1/jobs", json.dumps(changed), "canon-1")
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "idempotency_key_reused"
    assert tenant.client.get("/v1/jobs").json()["data"][0]["id"] == first.json()["id"]


def test_a_job_stored_with_the_old_byte_hash_still_replays(
    tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    text = json.dumps(seededit_body(prompt="before the upgrade"))
    first = _post_text(tenant, "/v1/jobs", text, "legacy-1")
    assert first.status_code == 202, first.text
    # Jobs created before canonical hashing hold sha256 of the bytes as sent.
    with transaction(sessions) as session:
        job = session.get(Job, first.json()["id"])
        job.request_hash = hashlib.sha256(text.encode()).hexdigest()
    again = _post_text(tenant, "/v1/jobs", text, "legacy-1")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    other = _post_text(tenant, "/v1/jobs", text.replace("before", "after"), "legacy-1")
    assert other.json()["code"] == "idempotency_key_reused"


def test_models_catalog_lists_limits_and_providers(tenant: TenantClient) -> None:
    models = {m["id"]: m for m in tenant.client.get("/v1/models").json()["data"]}
    assert set(models) == {"seededit-3.0", "seedream-4.0-edit"}
    seededit = models["seededit-3.0"]
    assert "doubao-seededit-3-0-i2i-250628" in seededit["aliases"]
    assert seededit["limits"]["prompt_max_chars"] == 800
    assert seededit["limits"]["images_max"] == 1
    assert seededit["available_providers"] == ["ark", "vtrix", "cometapi", "acedata"]
    seedream = models["seedream-4.0-edit"]
    assert seedream["available_providers"] == ["kie", "ark", "cometapi", "acedata"]


def test_operations_endpoints(stack) -> None:
    assert httpx.get(f"{stack.api_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.api_url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    spec = httpx.get(f"{stack.api_url}/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert "/v1/jobs/{job_id}/cancel" in spec["paths"]
    assert "JobCreate" in spec["components"]["schemas"]
    docs = httpx.get(f"{stack.api_url}/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    asset = httpx.get(f"{stack.api_url}/docs/static/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000


def test_webhook_secret_get_and_rotate(tenant: TenantClient) -> None:
    secret = tenant.client.get("/v1/webhooks/secret").json()["secret"]
    assert secret == tenant.secret and secret.startswith("whsec_")
    rotated = tenant.client.post("/v1/webhooks/secret/rotate").json()["secret"]
    assert rotated != secret
    assert tenant.client.get("/v1/webhooks/secret").json()["secret"] == rotated


@pytest.mark.parametrize("cursor", ["garbage", "x" * 500, "am9iXw", "%%%"])
def test_absurd_cursors_are_422(tenant: TenantClient, cursor: str) -> None:
    response = tenant.client.get("/v1/jobs", params={"cursor": cursor})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "cursor"
