"""The typed SDK (`from editqueue import Client`) against the live stack."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from editqueue import Client
from editqueue.client import (
    IdempotencyKeyReused,
    InvalidSignature,
    Job,
    JobFinished,
    MissingKey,
    NotFound,
    RateLimited,
    ValidationFailed,
    WaitTimeout,
)
from editqueue.db import transaction
from editqueue.models import Job as JobRow
from tests.conftest import Receiver, TenantClient, data_url, png_bytes
from tests.integration.test_rate_limit import set_rate_limit

PROMPT = "make it snowy"


@pytest.fixture
def client(tenant: TenantClient) -> Client:
    with Client(str(tenant.client.base_url), tenant.key) as sdk:
        yield sdk


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    path.write_bytes(png_bytes(seed=3))
    return path


def test_create_from_a_path_wait_and_download(client: Client, image: Path, tmp_path: Path) -> None:
    job = client.jobs.create(
        model="seededit-3.0", prompt=PROMPT, images=[image], metadata={"run": "7"}, seed=5
    )
    assert isinstance(job, Job) and job.status == "queued"
    # Sent as multipart with `metadata[run]=7` form fields and an `image` file part.
    assert job.metadata == {"run": "7"} and job.params["seed"] == 5
    assert job.inputs[0].sha256 == hashlib.sha256(image.read_bytes()).hexdigest()

    done = client.jobs.wait(job.id, timeout=60)
    assert done.status == "succeeded" and done.done
    assert done.outputs[0].url.startswith("http")
    [saved] = client.jobs.download(done, tmp_path / "out")
    assert saved.name == f"{job.id}.jpg" and done.outputs[0].content_type == "image/jpeg"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == done.outputs[0].sha256
    assert client.jobs.events(job.id)[0].type == "job.created"


class NoEventStreams(httpx.HTTPTransport):
    """The real network, except that event streams are refused (as by a buffering proxy)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("accept") == "text/event-stream":
            self.refused += 1
            return httpx.Response(406, request=request)
        return super().handle_request(request)


def test_wait_falls_back_to_polling_and_times_out(tenant: TenantClient) -> None:
    proxy = NoEventStreams()
    with Client(str(tenant.client.base_url), tenant.key, transport=proxy) as client:
        job = client.jobs.create(
            model="seededit-3.0", prompt=PROMPT, images=[data_url(png_bytes())]
        )
        with pytest.raises(WaitTimeout):
            client.jobs.wait(job.id, timeout=0.01)
        # Whether that short wait got as far as trying the stream depends on the machine.
        refused_before = proxy.refused
        assert client.jobs.wait(job.id, timeout=60, poll_interval=0.2).status == "succeeded"
    assert proxy.refused == refused_before + 1  # tried the stream once, then polled
    with Client(str(tenant.client.base_url), tenant.key) as plain, pytest.raises(NotFound):
        plain.jobs.wait("job_nope", timeout=5)


def test_list_follows_pages_lazily_with_filters(client: Client) -> None:
    before = dt.datetime.now(dt.UTC)
    image = data_url(png_bytes(seed=1))
    created = [
        client.jobs.create(
            model="seededit-3.0", prompt=f"p{i}", images=[image], metadata={"run": str(i % 2)}
        )
        for i in range(5)
    ]
    odd = list(client.jobs.list(metadata={"run": "1"}, limit=1))  # one job per page
    assert [j.id for j in odd] == [created[3].id, created[1].id]
    every = list(client.jobs.list(created_after=before, limit=2))
    assert [j.id for j in every] == [j.id for j in reversed(created)]
    assert list(client.jobs.list(status=["failed", "canceled"])) == []


def test_created_after_is_inclusive_and_created_before_exclusive(client: Client, sessions) -> None:
    job = client.jobs.create(model="seededit-3.0", prompt=PROMPT, images=[data_url(png_bytes())])
    # Exact to the microsecond, and near the id's own time: the list bounds ids by
    # created_* too, trusting API and database clocks to agree within an hour
    # (editqueue.jobs.states.ID_CLOCK_SLACK).
    at = dt.datetime.now(dt.UTC).replace(microsecond=123456) - dt.timedelta(seconds=5)
    with transaction(sessions) as session:
        session.execute(update(JobRow).where(JobRow.id == job.id).values(created_at=at))
    assert [j.id for j in client.jobs.list(created_after=at)] == [job.id]
    assert [j.id for j in client.jobs.list(created_before=at)] == []
    next_second = at + dt.timedelta(seconds=1)
    assert [j.id for j in client.jobs.list(created_after=at, created_before=next_second)] == [
        job.id
    ]


def test_multipart_metadata_fields_and_exact_size_messages(
    client: Client, tenant: TenantClient
) -> None:
    form = {"model": "seededit-3.0", "prompt": "p", "metadata[run]": "x", "metadata": '{"a": "1"}'}
    files = {"image": ("in.png", png_bytes(), "image/png")}
    response = tenant.client.post("/v1/jobs", data=form, files=files)
    assert response.status_code == 202, response.text
    assert response.json()["metadata"] == {"a": "1", "run": "x"}

    with pytest.raises(ValidationFailed) as too_big:
        client.jobs.create(
            model="seededit-3.0", prompt="p", images=[b"\0" * (10 * 1024 * 1024 + 1)]
        )
    assert too_big.value.detail.endswith(
        "image is 10.01 MB (10,485,761 bytes); the limit is 10 MB (10,485,760 bytes)"
    ), too_big.value.detail


def test_batches_create_and_wait(client: Client) -> None:
    batch = client.batches.create(
        jobs=[{"prompt": f"snow {i}"} for i in range(3)],
        defaults={"model": "seededit-3.0", "image": data_url(png_bytes(seed=4))},
        metadata={"run": "b"},
        idempotency_key="sdk-batch-1",
    )
    assert batch.counts.total == 3 and not batch.replayed
    again = client.batches.create(
        jobs=[{"prompt": f"snow {i}"} for i in range(3)],
        defaults={"model": "seededit-3.0", "image": data_url(png_bytes(seed=4))},
        metadata={"run": "b"},
        idempotency_key="sdk-batch-1",
    )
    assert again.replayed and again.id == batch.id
    done = client.batches.wait(batch.id, timeout=60, poll_interval=0.3)
    assert done.counts.succeeded == 3 and done.done
    assert sorted(j.id for j in client.jobs.list(batch_id=batch.id)) == sorted(batch.job_ids)


def test_webhook_endpoint_delivery_verifies(client: Client, receiver: Receiver) -> None:
    endpoint = client.webhook_endpoints.create(url=receiver.url, events=["job.succeeded"])
    assert endpoint.secret and endpoint.secret.startswith("whsec_")
    assert [e.id for e in client.webhook_endpoints.list()] == [endpoint.id]
    job = client.jobs.create(model="seededit-3.0", prompt=PROMPT, images=[data_url(png_bytes())])
    [delivery] = receiver.wait_for(1)
    event = client.webhooks.verify(delivery.body, delivery.headers, secret=endpoint.secret)
    assert event.type == "job.succeeded" and event.job is not None and event.job.id == job.id
    with pytest.raises(InvalidSignature):
        client.webhooks.verify(delivery.body + b" ", delivery.headers, secret=endpoint.secret)
    # Without secret=, the tenant's secret is fetched: it does not sign endpoint deliveries.
    with pytest.raises(InvalidSignature):
        client.webhooks.verify(delivery.body, delivery.headers)
    client.webhook_endpoints.delete(endpoint.id)
    with pytest.raises(NotFound):
        client.webhook_endpoints.get(endpoint.id)


def test_per_job_webhook_verifies_with_the_tenant_secret(
    client: Client, receiver: Receiver
) -> None:
    job = client.jobs.create(
        model="seededit-3.0",
        prompt=PROMPT,
        images=[data_url(png_bytes())],
        webhook_url=receiver.url,
    )
    [delivery] = receiver.wait_for(1)
    event = client.webhooks.verify(delivery.body, delivery.headers)
    assert event.job is not None and event.job.id == job.id


def test_errors_map_to_the_exception_tree(client: Client, tenant: TenantClient) -> None:
    with pytest.raises(NotFound) as missing:
        client.jobs.get("job_nope")
    assert (missing.value.status, missing.value.code) == (404, "not_found")

    with pytest.raises(ValidationFailed) as invalid:
        client.batches.create(
            jobs=[{"prompt": "ok"}, {"prompt": "x" * 6000}],
            defaults={"model": "seededit-3.0", "image": data_url(png_bytes())},
        )
    assert "jobs[1].prompt" in invalid.value.fields

    job = client.jobs.create(model="seededit-3.0", prompt=PROMPT, images=[data_url(png_bytes())])
    client.jobs.wait(job.id, timeout=60)
    with pytest.raises(JobFinished) as finished:
        client.jobs.cancel(job.id)
    assert finished.value.status == 409 and finished.value.code == "job_finished"

    body = {"model": "seededit-3.0", "images": [data_url(png_bytes())]}
    client.jobs.create(prompt="one", idempotency_key="k-1", **body)
    replay = client.jobs.create(prompt="one", idempotency_key="k-1", **body)
    assert replay.prompt == "one"
    with pytest.raises(IdempotencyKeyReused):
        client.jobs.create(prompt="two", idempotency_key="k-1", **body)

    with pytest.raises(MissingKey):
        Client(str(tenant.client.base_url), "")


def test_429_is_retried_after_retry_after_then_surfaced(tenant: TenantClient, sessions) -> None:
    # Set before the key's first request, so no API process has its old limit cached.
    set_rate_limit(sessions, tenant, 1)  # 1 request/s, bursts of 2
    impatient = Client(str(tenant.client.base_url), tenant.key, max_retries=0)
    with impatient, pytest.raises(RateLimited) as limited:
        for _ in range(6):
            list(impatient.jobs.list())
    error = limited.value
    assert error.status == 429 and error.retry_after is not None and error.retry_after >= 1
    # RateLimit-Reset agrees with Retry-After on a refusal.
    assert error.headers["ratelimit-reset"] == error.headers["retry-after"]

    with Client(str(tenant.client.base_url), tenant.key, max_retries=5) as patient:
        started = time.monotonic()
        pages = [list(patient.jobs.list()) for _ in range(5)]  # over the burst, yet no error
    assert pages == [[]] * 5
    assert time.monotonic() - started >= 1.0  # it waited for Retry-After at least once
