"""The served `/openapi.json`: valid 3.1, fully described, and good enough to generate a client."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from editqueue.webhooks.signing import ENDPOINT_EVENT_TYPES
from tests.conftest import TenantClient, data_url, png_bytes
from tests.stack import Stack

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def spec(stack: Stack) -> dict[str, Any]:
    response = httpx.get(f"{stack.api_url}/openapi.json", timeout=30)
    assert response.status_code == 200
    return response.json()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def test_served_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises on any violation of the 3.1 schema


def test_every_operation_has_a_summary_and_a_description(spec: dict[str, Any]) -> None:
    ops = _operations(spec)
    assert len(ops) >= 20
    bare = [
        f"{method.upper()} {path}"
        for path, method, op in ops
        if not op.get("summary") or not op.get("description")
    ]
    assert bare == []


def test_every_schema_property_and_parameter_is_described(spec: dict[str, Any]) -> None:
    undescribed = [
        f"{name}.{prop}"
        for name, schema in spec["components"]["schemas"].items()
        for prop, body in schema.get("properties", {}).items()
        if not body.get("description")
    ]
    assert undescribed == []
    params = [
        f"{method.upper()} {path} {param['name']}"
        for path, method, op in _operations(spec)
        for param in op.get("parameters", [])
        if not param.get("description")
    ]
    assert params == []


def test_error_statuses_are_problems_with_their_types(spec: dict[str, Any]) -> None:
    for path, method, op in _operations(spec):
        for status, response in op["responses"].items():
            # /readyz's 503 is its readiness report (what a load balancer reads), not a problem.
            if not status.isdigit() or int(status) < 400 or path == "/readyz":
                continue
            where = f"{method.upper()} {path} {status}"
            media = response["content"]["application/problem+json"]
            assert media["schema"] == {"$ref": "#/components/schemas/Problem"}, where
            assert "https://editqueue.dev/problems/" in response["description"], where
    create = spec["paths"]["/v1/jobs"]["post"]["responses"]
    assert create["429"]["description"].startswith("Rate limited — retry after Retry-After")
    assert "Retry-After" in create["429"]["headers"]
    assert "/problems/invalid_request" in create["422"]["description"]


def test_documented_headers_are_defined_and_sent(
    spec: dict[str, Any], tenant: TenantClient
) -> None:
    defined = spec["components"]["headers"]
    for name in (
        "Location",
        "Idempotent-Replayed",
        "Preference-Applied",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "Retry-After",
    ):
        assert defined[name]["description"], name
    for path, method, op in _operations(spec):
        for response in op["responses"].values():
            for header in response.get("headers", {}).values():
                assert header["$ref"].split("/")[-1] in defined, f"{method} {path}"
    documented = spec["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"Location", "Idempotent-Replayed"} <= set(documented["200"]["headers"])
    assert {"Location", "RateLimit-Remaining"} <= set(documented["202"]["headers"])
    # …and the live API really sends what the 200 and 202 promise.
    body = {"model": "seededit-3.0", "prompt": "snow", "image": data_url(png_bytes())}
    key = {"Idempotency-Key": f"openapi-{time.time_ns()}"}
    first = tenant.client.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == 202, first.text
    assert first.headers["Location"] == f"/v1/jobs/{first.json()['id']}"
    assert int(first.headers["RateLimit-Remaining"]) >= 0
    again = tenant.client.post("/v1/jobs", json=body, headers=key)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"


def test_multipart_bodies_carry_binary_images(spec: dict[str, Any]) -> None:
    content = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    ref = content["multipart/form-data"]["schema"]["$ref"].split("/")[-1]
    assert ref != content["application/json"]["schema"]["$ref"].split("/")[-1]
    image = spec["components"]["schemas"][ref]["properties"]["image"]
    assert image["type"] == "array"
    assert image["items"]["format"] == "binary"


def test_webhooks_section_has_every_event_type(spec: dict[str, Any]) -> None:
    assert set(spec["webhooks"]) == set(ENDPOINT_EVENT_TYPES)
    schemas = spec["components"]["schemas"]
    for event_type, item in spec["webhooks"].items():
        post = item["post"]
        headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        payload = schemas[ref.split("/")[-1]]
        assert payload["required"] == ["type", "timestamp", "data"]
        assert payload["properties"]["type"]["const"] == event_type
        assert payload["properties"]["data"]["$ref"].split("/")[-1] in schemas


def test_operations_endpoints_are_documented_and_html_is_not(spec: dict[str, Any]) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert spec["paths"][path]["get"]["tags"] == ["operations"], path
    assert not [p for p in spec["paths"] if p.startswith(("/docs", "/console"))]


def test_generated_client_runs_a_job(
    spec: dict[str, Any], tenant: TenantClient, stack: Stack, tmp_path: Path
) -> None:
    if shutil.which("openapi-python-client") is None:
        pytest.fail("openapi-python-client is not installed (pip install -e '.[test]')")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    package = tmp_path / "eq_generated_client"
    done = subprocess.run(
        [
            "openapi-python-client",
            "generate",
            "--path",
            str(tmp_path / "spec.json"),
            "--output-path",
            str(package),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout, done.stdout  # every operation and schema parsed
    sys.path.insert(0, str(tmp_path))
    try:
        client_mod = importlib.import_module("eq_generated_client")
        create = importlib.import_module("eq_generated_client.api.jobs.post_v1_jobs")
        get = importlib.import_module("eq_generated_client.api.jobs.get_v1_jobs_job_id")
        models = importlib.import_module("eq_generated_client.models")
        client = client_mod.AuthenticatedClient(base_url=stack.api_url, token=tenant.key)
        body = models.JobCreate(
            model="seededit-3.0", prompt="make it snowy", image=data_url(png_bytes())
        )
        job = create.sync(client=client, body=body)
        assert isinstance(job, models.Job), job
        deadline = time.monotonic() + 30
        while job.status not in ("succeeded", "failed", "canceled"):
            assert time.monotonic() < deadline, f"job still {job.status}"
            time.sleep(0.2)
            job = get.sync(job_id=job.id, client=client)
            assert isinstance(job, models.Job), job
        assert job.status == "succeeded", job.error
        assert job.outputs and job.outputs[0].url
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("eq_generated_client")]:
            del sys.modules[name]
