"""Values nothing can store — NUL, lone surrogates, NaN, ±Infinity, out-of-range times —
get a 4xx problem+json naming the field at every way in, and nothing is written.

Bodies are sent as raw bytes so each hostile value reaches the API exactly as written:
`\\u0000` and `\\ud800` as JSON escapes, a surrogate also as its (invalid) UTF-8 bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from editqueue.models import Batch, Job, JobEvent, TenantEvent, WebhookEndpoint
from tests.conftest import TenantClient, data_url, png_bytes
from tests.stack import Stack

SLOT = "@@HOSTILE@@"
PROBLEM = "application/problem+json"

# Raw JSON tokens for a string's place (also a key's) and for a number's place.
STRINGS = {
    "nul-escape": b'"a\\u0000b"',
    "surrogate-escape": b'"a\\ud800b"',
    "low-surrogate-escape": b'"\\udfff"',
    "surrogate-bytes": b'"a\xed\xa0\x80b"',
}
NUMBERS = {
    "nan": b"NaN",
    "infinity": b"Infinity",
    "minus-infinity": b"-Infinity",
    "overflowing-float": b"1e400",
}
OUT_OF_RANGE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


def job_body(**extra: Any) -> dict[str, Any]:
    """A valid POST /v1/jobs body, changed by `extra`."""
    return {"model": "seededit-3.0", "prompt": "snow", "image": data_url(png_bytes()), **extra}


def with_hostile(body: dict[str, Any], token: bytes) -> bytes:
    """`body` as JSON bytes with the SLOT string (a value or a key) replaced by `token`."""
    raw = json.dumps(body).encode()
    assert raw.count(json.dumps(SLOT).encode()) == 1
    return raw.replace(json.dumps(SLOT).encode(), token)


def assert_problem(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """A 4xx problem+json (of `status` if given); returns its body."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == response.status_code
    assert body["type"].endswith(body["code"]) and body["title"] and body["detail"]
    return body


def fields(problem: dict[str, Any]) -> list[str]:
    return [e["field"] for e in problem["errors"]]


def written(sessions: sessionmaker[Session], tenant_id: str) -> dict[str, int]:
    """How many rows of each kind a tenant has, and queued tasks about its endpoints."""
    counts = {}
    with sessions() as session:
        for model in (Job, Batch, WebhookEndpoint, TenantEvent):
            query = select(func.count()).select_from(model).where(model.tenant_id == tenant_id)
            counts[model.__tablename__] = session.scalar(query)
        events = select(func.count()).select_from(JobEvent).join(Job, Job.id == JobEvent.job_id)
        counts["job_events"] = session.scalar(events.where(Job.tenant_id == tenant_id))
        counts["outbox"] = session.scalar(
            text(
                "SELECT count(*) FROM outbox WHERE args->>0 IN"
                " (SELECT id FROM webhook_endpoints WHERE tenant_id = :t)"
            ),
            {"t": tenant_id},
        )
    return counts


@pytest.fixture
def unchanged(sessions: sessionmaker[Session], tenant: TenantClient) -> Callable[[], None]:
    """Call at the end of a test: asserts the tenant's rows are as they were at its start."""
    before = written(sessions, tenant.id)
    return lambda: _assert_same(before, written(sessions, tenant.id))


def _assert_same(before: dict[str, int], after: dict[str, int]) -> None:
    assert after == before


@pytest.fixture
def endpoint(tenant: TenantClient) -> dict[str, Any]:
    """A webhook endpoint of the tenant (nothing listens at its URL)."""
    response = tenant.client.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/h"})
    assert response.status_code == 201, response.text
    return response.json()


def post_raw(tenant: TenantClient, method: str, path: str, raw: bytes) -> httpx.Response:
    headers = {"content-type": "application/json"}
    return tenant.client.request(method, path, content=raw, headers=headers)


# -- JSON bodies ------------------------------------------------------------------------------

# (method, path, body with SLOT in a string's place, the field the answer must name)
STRING_SLOTS = [
    ("POST", "/v1/jobs", job_body(prompt=SLOT), "prompt"),
    ("POST", "/v1/jobs", job_body(metadata={"k": SLOT}), "metadata.k"),
    ("POST", "/v1/jobs", job_body(metadata={SLOT: "v"}), "metadata."),
    ("POST", "/v1/jobs", job_body(provider_options={"style": SLOT}), "provider_options.style"),
    ("POST", "/v1/jobs", job_body(webhook_url=SLOT), "webhook_url"),
    ("POST", "/v1/batches", {"jobs": [job_body(), job_body(prompt=SLOT)]}, "jobs[1].prompt"),
    ("POST", "/v1/batches", {"jobs": [job_body()], "metadata": {"k": SLOT}}, "metadata.k"),
    (
        "POST",
        "/v1/webhook-endpoints",
        {"url": "http://127.0.0.1:9/h", "description": SLOT},
        "description",
    ),
    ("PATCH", "/v1/webhook-endpoints/{endpoint}", {"description": SLOT}, "description"),
    ("POST", "/v1/webhook-endpoints/{endpoint}/recover", {"since": SLOT}, "since"),
]
NUMBER_SLOTS = [
    (
        "POST",
        "/v1/jobs",
        job_body(provider_options={"strength": SLOT}),
        "provider_options.strength",
    ),
    ("POST", "/v1/jobs", job_body(guidance_scale=SLOT), "guidance_scale"),
    (
        "POST",
        "/v1/batches",
        {"jobs": [job_body(provider_options={"x": [1, SLOT]})]},
        "jobs[0].provider_options.x[1]",
    ),
]


def _cases(slots: list[tuple], tokens: dict[str, bytes]) -> list[Any]:
    return [
        pytest.param(method, path, body, field, token, id=f"{method} {path} {field} {name}")
        for method, path, body, field in slots
        for name, token in tokens.items()
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "token"),
    _cases(STRING_SLOTS, STRINGS) + _cases(NUMBER_SLOTS, NUMBERS),
)
def test_hostile_json_values_are_4xx_naming_the_field_and_write_nothing(
    tenant: TenantClient,
    endpoint: dict[str, Any],
    unchanged: Callable[[], None],
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
    token: bytes,
) -> None:
    raw = with_hostile(body, token)
    response = post_raw(tenant, method, path.format(endpoint=endpoint["id"]), raw)
    problem = assert_problem(response)
    assert any(name.startswith(field) for name in fields(problem)), problem
    unchanged()


def test_a_valid_surrogate_pair_is_not_mistaken_for_a_lone_one(tenant: TenantClient) -> None:
    raw = with_hostile(job_body(prompt=SLOT), b'"snow \\ud83c\\udf28"')
    response = post_raw(tenant, "POST", "/v1/jobs", raw)
    assert response.status_code == 202, response.text
    assert response.json()["prompt"] == "snow \N{CLOUD WITH SNOW}"


# -- multipart --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"prompt": "a\x00b"}, "prompt"),
        ({"metadata": '{"k": "a\\u0000b"}'}, "metadata"),
        ({"metadata": '{"k": "a\\ud800b"}'}, "metadata"),
        ({"provider_options": '{"strength": NaN}'}, "provider_options"),
        ({"provider_options": '{"strength": -Infinity}'}, "provider_options"),
    ],
    ids=["nul-prompt", "nul-metadata", "surrogate-metadata", "nan", "minus-infinity"],
)
def test_hostile_multipart_fields_are_4xx_and_write_nothing(
    tenant: TenantClient, unchanged: Callable[[], None], form: dict[str, str], field: str | None
) -> None:
    data = {"model": "seededit-3.0", "prompt": "snow", **form}
    files = {"image": ("in.png", png_bytes(), "image/png")}
    problem = assert_problem(tenant.client.post("/v1/jobs", data=data, files=files))
    if field is not None:
        assert any(name.startswith(field) for name in fields(problem)), problem
    unchanged()


def raw_multipart(parts: list[tuple[bytes, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of (Content-Disposition parameters, content) parts, as
    written: httpx would percent-escape a NUL in a name, so the API would never see it."""
    boundary = "hostile-boundary"
    body = b"".join(
        b"--"
        + boundary.encode()
        + b"\r\nContent-Disposition: form-data; "
        + params
        + b"\r\n\r\n"
        + content
        + b"\r\n"
        for params, content in parts
    )
    return body + b"--" + boundary.encode() + b"--\r\n", f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (b'name="meta\x00data"', "meta\\u0000data"),
        (b'name="image"; filename="in\x00.png"', "image"),
    ],
    ids=["field-name", "file-name"],
)
def test_a_nul_in_a_multipart_name_is_422(
    tenant: TenantClient, unchanged: Callable[[], None], params: bytes, field: str
) -> None:
    body, content_type = raw_multipart(
        [
            (b'name="model"', b"seededit-3.0"),
            (b'name="prompt"', b"snow"),
            (b'name="image"; filename="a.png"', png_bytes()),
            (params, b"x"),
        ]
    )
    response = tenant.client.post("/v1/jobs", content=body, headers={"content-type": content_type})
    assert field in fields(assert_problem(response, 422))
    unchanged()


# -- query strings, path ids, cursors ---------------------------------------------------------

QUERY_PATHS = {
    "jobs": ("/v1/jobs", ["status", "model", "provider", "batch_id", "created_after", "cursor"]),
    "endpoints": ("/v1/webhook-endpoints", ["cursor", "limit"]),
    "deliveries": ("/v1/webhook-endpoints/{endpoint}/deliveries", ["state", "cursor", "limit"]),
}


@pytest.mark.parametrize(
    ("path", "name"),
    [(path, name) for path, names in QUERY_PATHS.values() for name in names]
    + [("/v1/jobs", "metadata[k]")],
)
def test_a_nul_in_a_query_value_is_422_naming_the_parameter(
    tenant: TenantClient, endpoint: dict[str, Any], path: str, name: str
) -> None:
    url = path.format(endpoint=endpoint["id"])
    problem = assert_problem(tenant.client.get(url, params={name: "a\x00b"}), 422)
    assert name in fields(problem)


def test_a_nul_in_a_query_name_is_422(tenant: TenantClient) -> None:
    problem = assert_problem(tenant.client.get("/v1/jobs?metadata[a%00]=v"), 422)
    assert fields(problem) == ["metadata[a\\u0000]"]


def test_surrogates_in_a_query_are_never_5xx(tenant: TenantClient) -> None:
    # Percent-encoded surrogate bytes are invalid UTF-8: decoded as U+FFFD, which is storable.
    response = tenant.client.get("/v1/jobs?model=%ED%A0%80&metadata[k]=%ED%A0%80")
    assert response.status_code < 500, response.text


@pytest.mark.parametrize("created", [*OUT_OF_RANGE_TIMES, "+99999-01-01T00:00:00Z"])
def test_out_of_range_list_filters_are_422(tenant: TenantClient, created: str) -> None:
    for name in ("created_after", "created_before"):
        problem = assert_problem(tenant.client.get("/v1/jobs", params={name: created}), 422)
        assert name in fields(problem)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs/job_a%00b"),
        ("GET", "/v1/jobs/%00/events"),
        ("POST", "/v1/jobs/job_%00/cancel"),
        ("GET", "/v1/jobs/job_%00/deliveries"),
        ("POST", "/v1/jobs/job_%00/deliveries/retry"),
        ("GET", "/v1/batches/%00"),
        ("GET", "/v1/webhook-endpoints/whe_%00"),
        ("PATCH", "/v1/webhook-endpoints/whe_%00"),
        ("DELETE", "/v1/webhook-endpoints/whe_%00"),
        ("POST", "/v1/webhook-endpoints/whe_%00/recover"),
        ("GET", "/v1/webhook-endpoints/whe_%00/deliveries"),
    ],
)
def test_a_nul_in_a_path_id_is_404_like_any_unknown_id(
    tenant: TenantClient, unchanged: Callable[[], None], method: str, path: str
) -> None:
    response = tenant.client.request(method, path, json={})
    assert_problem(response, 404)
    unchanged()


# -- vendor callbacks (no API key) ------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/callbacks/kie/tok%00en", "/v1/callbacks/k%00ie/token", "/v1/callbacks/%00/%00"]
)
def test_a_nul_in_the_callback_path_is_404(stack: Stack, path: str) -> None:
    response = httpx.post(f"{stack.api_url}{path}", json={"code": 200})
    assert_problem(response, 404)


@pytest.mark.parametrize("token", [*STRINGS.values(), *NUMBERS.values()], ids=[*STRINGS, *NUMBERS])
def test_hostile_callback_bodies_are_4xx_and_write_nothing(
    stack: Stack, unchanged: Callable[[], None], token: bytes
) -> None:
    body = {"code": 200, "msg": "ok", "data": {"taskId": SLOT, "state": "success"}}
    response = httpx.post(
        f"{stack.api_url}/v1/callbacks/kie/cb_token",
        content=with_hostile(body, token),
        headers={"content-type": "application/json"},
    )
    # Refused before the token is looked up: a hostile body never reaches the job.
    problem = assert_problem(response, 400)
    assert fields(problem) == ["data.taskId"]
    unchanged()


# -- recover since ----------------------------------------------------------------------------


@pytest.mark.parametrize("since", OUT_OF_RANGE_TIMES)
def test_recover_with_an_out_of_range_time_is_422_and_queues_nothing(
    tenant: TenantClient, endpoint: dict[str, Any], unchanged: Callable[[], None], since: str
) -> None:
    path = f"/v1/webhook-endpoints/{endpoint['id']}/recover"
    problem = assert_problem(tenant.client.post(path, json={"since": since}), 422)
    assert fields(problem) == ["since"]
    later = {"since": "2020-01-01T00:00:00Z", "until": since}
    problem = assert_problem(tenant.client.post(path, json=later), 422)
    assert fields(problem) == ["until"]
    unchanged()


def test_recover_at_the_edges_of_the_range_answers_in_rfc3339(
    tenant: TenantClient, endpoint: dict[str, Any]
) -> None:
    path = f"/v1/webhook-endpoints/{endpoint['id']}/recover"
    body = {"since": "0001-01-01T00:00:00-14:00", "until": "9999-12-31T23:59:59+14:00"}
    response = tenant.client.post(path, json=body)
    assert response.status_code == 202, response.text
    assert response.json()["since"] == "0001-01-01T14:00:00.000Z"
    assert response.json()["until"] == "9999-12-31T09:59:59.000Z"


# -- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [8_001, 8_300, 20_000, 60_000])
def test_an_overlong_url_is_414_problem_json(stack: Stack, tenant: TenantClient, length: int):
    path = "/v1/jobs?model="
    url = path + "x" * (length - len(path))
    response = tenant.client.get(url)
    assert_problem(response, 414)
    # Unauthenticated too: the limit is about the request, not its sender.
    assert_problem(httpx.get(f"{stack.api_url}{url}"), 414)


def test_a_url_at_the_limit_is_served(tenant: TenantClient) -> None:
    path = "/v1/jobs?model="
    response = tenant.client.get(path + "x" * (8_000 - len(path)))
    assert response.status_code == 200, response.text


def test_an_oversized_chunked_body_is_413(
    tenant: TenantClient, unchanged: Callable[[], None]
) -> None:
    chunk = b" " * (1024 * 1024)

    def body():
        yield b'{"model": "seededit-3.0", "prompt": "'
        for _ in range(70):  # 70 MiB, over the 64 MiB limit, with no Content-Length
            yield chunk
        yield b'"}'

    response = tenant.client.post(
        "/v1/jobs", content=body(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)
    unchanged()


def test_a_small_chunked_body_is_read(tenant: TenantClient) -> None:
    raw = json.dumps(job_body()).encode()
    response = tenant.client.post(
        "/v1/jobs", content=iter([raw[:10], raw[10:]]), headers={"content-type": "application/json"}
    )
    assert response.status_code == 202, response.text
