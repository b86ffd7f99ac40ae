"""Tenant isolation over every endpoint: another tenant's objects are 404, never 403 or data."""

from __future__ import annotations

import pytest

from editqueue.ids import new_id
from tests.conftest import Receiver, TenantClient, data_url, png_bytes

# Every route that takes an object id, with a body where it needs one.
ROUTES = [
    ("GET", "/v1/jobs/{job}", None),
    ("POST", "/v1/jobs/{job}/cancel", None),
    ("GET", "/v1/jobs/{job}/events", None),
    ("GET", "/v1/jobs/{job}/deliveries", None),
    ("POST", "/v1/jobs/{job}/deliveries/retry", None),
    ("GET", "/v1/batches/{batch}", None),
    ("POST", "/v1/batches/{batch}/cancel", None),
    ("GET", "/v1/webhook-endpoints/{endpoint}", None),
    ("PATCH", "/v1/webhook-endpoints/{endpoint}", {"description": "taken over"}),
    ("GET", "/v1/webhook-endpoints/{endpoint}/secret", None),
    ("POST", "/v1/webhook-endpoints/{endpoint}/rotate-secret", None),
    ("GET", "/v1/webhook-endpoints/{endpoint}/deliveries", None),
    ("POST", "/v1/webhook-endpoints/{endpoint}/recover", {"since": "2020-01-01T00:00:00Z"}),
    ("DELETE", "/v1/webhook-endpoints/{endpoint}", None),
]


@pytest.fixture
def owned(tenant: TenantClient, receiver: Receiver) -> dict[str, str]:
    """A job, a batch and an endpoint belonging to `tenant`."""
    image = data_url(png_bytes())
    job = tenant.create_job(
        model="seededit-3.0", prompt="mine", image=image, webhook_url=receiver.url
    )
    batch = tenant.client.post(
        "/v1/batches", json={"jobs": [{"model": "seededit-3.0", "prompt": "b", "image": image}]}
    )
    assert batch.status_code == 202, batch.text
    endpoint = tenant.client.post(
        "/v1/webhook-endpoints", json={"url": receiver.url, "events": ["job.succeeded"]}
    )
    assert endpoint.status_code in (200, 201), endpoint.text
    tenant.wait_job(job["id"])
    return {"job": job["id"], "batch": batch.json()["id"], "endpoint": endpoint.json()["id"]}


@pytest.mark.parametrize(
    ("method", "template", "body"), ROUTES, ids=[f"{m} {t}" for m, t, _ in ROUTES]
)
def test_another_tenants_objects_are_not_found(
    tenant: TenantClient,
    other_tenant: TenantClient,
    owned: dict[str, str],
    method: str,
    template: str,
    body: dict | None,
) -> None:
    path = template.format(**owned)
    foreign = other_tenant.client.request(method, path, json=body)
    assert foreign.status_code == 404, (path, foreign.status_code, foreign.text)
    assert foreign.headers["content-type"] == "application/problem+json"
    # Indistinguishable from an id that does not exist at all.
    made_up = {kind: new_id(value.split("_")[0]) for kind, value in owned.items()}
    unknown = other_tenant.client.request(method, template.format(**made_up), json=body)
    normalise = {**dict(zip(owned.values(), owned.keys(), strict=True))}
    normalise.update(dict(zip(made_up.values(), made_up.keys(), strict=True)))

    def anonymous(text: str) -> str:
        for value, kind in normalise.items():
            text = text.replace(value, kind)
        return text

    assert anonymous(foreign.text) == anonymous(unknown.text)
    # The owner reaches the same route: the 404 above is isolation, not a broken route.
    mine = tenant.client.request(method, path, json=body)
    assert mine.status_code < 400 or mine.status_code == 409, (path, mine.status_code, mine.text)


def test_lists_never_show_another_tenants_objects(
    tenant: TenantClient, other_tenant: TenantClient, owned: dict[str, str]
) -> None:
    for path in ("/v1/jobs", "/v1/webhook-endpoints", f"/v1/jobs?batch_id={owned['batch']}"):
        response = other_tenant.client.get(path)
        assert response.status_code == 200
        assert response.json()["data"] == []
    assert other_tenant.client.get("/v1/webhooks/secret").json()["secret"] != tenant.secret
