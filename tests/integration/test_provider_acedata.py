"""AceDataProvider against the AceData emulator over loopback: sync, async, callbacks.

Also: a job pinned to AceData runs end to end on the test stack, and a callback about a
task the service does not know is refused (404) and changes nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from editqueue.models import Job
from editqueue.providers.acedata import AceDataProvider
from tests.conftest import TenantClient, data_url, png_bytes
from tests.integration.sandbox_server import CallbackReceiver, running_receiver, running_sandbox
from tests.integration.vendor_contract import (
    API_KEY,
    edit_request,
    fault,
    fresh_adapter,
    hanging_poll_error,
    poll_error,
    poll_until_done,
    submit_error,
    unused_input,
    wrong_key_error,
)
from tests.stack import Stack


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with running_sandbox({"api_keys": API_KEY, "latency": 0.3}) as url:
        yield url


@pytest.fixture
def acedata(sandbox_url: str) -> Iterator[AceDataProvider]:
    with fresh_adapter(AceDataProvider, sandbox_url, "acedata") as provider:
        yield provider


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with running_receiver() as callbacks:
        yield callbacks


def test_without_a_callback_the_edit_is_synchronous(acedata: AceDataProvider) -> None:
    status = acedata.submit(edit_request(guidance_scale=6.0))
    assert status.state == "succeeded" and status.task_id
    [output] = status.outputs
    picture = Image.open(io.BytesIO(httpx.get(output.url or "").content))
    assert (picture.format, picture.size) == ("JPEG", (1152, 864))


def test_seedream_group_synchronously(acedata: AceDataProvider) -> None:
    request = edit_request("seedream-4.0-edit", aspect_ratio="4:3", resolution="1K", n=2)
    status = acedata.submit(request)
    sizes = {Image.open(io.BytesIO(httpx.get(o.url or "").content)).size for o in status.outputs}
    assert len(status.outputs) == 2 and sizes == {(1168, 880)}


def test_with_a_callback_the_task_runs_async_and_calls_back(
    acedata: AceDataProvider, receiver: CallbackReceiver
) -> None:
    created = acedata.submit(edit_request(callback_url=receiver.url))
    assert created.state == "running" and created.task_id
    # Polling is the safety net: the record shape, running then finished.
    assert acedata.poll(created.task_id).state == "running"
    [callback] = receiver.wait_for(1)
    notice = acedata.parse_callback(callback.headers, callback.body)
    assert notice.task_id == created.task_id
    assert notice.status is not None and notice.status.state == "succeeded"
    polled = poll_until_done(acedata, created.task_id)
    assert polled.outputs == notice.status.outputs


def test_callback_for_an_unknown_task_is_a_notice_to_ignore(acedata: AceDataProvider) -> None:
    body = {"success": True, "task_id": "not-ours", "data": [{"image_url": "https://x/y.jpg"}]}
    notice = acedata.parse_callback({}, json.dumps(body).encode())
    assert notice.task_id == "not-ours"
    with pytest.raises(ValueError):
        acedata.parse_callback({}, b'{"task_id": "no success field"}')


@pytest.mark.parametrize(
    ("kind", "code", "retryable"),
    [("task_fail", "provider_unavailable", True), ("moderation", "content_rejected", False)],
)
def test_failed_tasks_poll_and_call_back_as_failed(
    acedata: AceDataProvider, receiver: CallbackReceiver, kind: str, code: str, retryable: bool
) -> None:
    request = edit_request(callback_url=receiver.url, provider_options=fault(kind))
    task_id = acedata.submit(request).task_id or ""
    [callback] = receiver.wait_for(1)
    for status in (
        acedata.parse_callback(callback.headers, callback.body).status,
        poll_until_done(acedata, task_id),
    ):
        assert status is not None and status.state == "failed" and status.error is not None
        assert (status.error.code, status.error.retryable) == (code, retryable)


@pytest.mark.parametrize(
    ("change", "code", "provider_code", "status"),
    [
        ({"guidance_scale": 0.5}, "invalid_request", "bad_request", 400),
        ({"images": [unused_input((14, 200))]}, "invalid_image", "bad_request", 400),
        ({"provider_options": fault("moderation")}, "content_rejected", "forbidden", 403),
    ],
    ids=["guidance", "narrow-image", "moderation"],
)
def test_synchronous_refusals(
    acedata: AceDataProvider, change: dict[str, Any], code: str, provider_code: str, status: int
) -> None:
    error = submit_error(acedata, edit_request(**change))
    assert (error.code, error.provider_code, error.retryable, error.status_code) == (
        code,
        provider_code,
        False,
        status,
    )


def test_wrong_key_is_a_permanent_provider_error(sandbox_url: str) -> None:
    error = wrong_key_error(AceDataProvider, f"{sandbox_url}/acedata", edit_request())
    assert (error.code, error.provider_code, error.retryable) == (
        "provider_error",
        "invalid_token",
        False,
    )


@pytest.mark.parametrize(
    ("fault_options", "code", "status"),
    [
        (fault("rate_limit", retry_after=3), "rate_limited", 429),
        (fault("server_error", status=500), "provider_unavailable", 500),
        (fault("server_error", status=504), "timeout", 504),
        (fault("task_fail"), "provider_unavailable", 500),
        (fault("malformed"), "provider_error", 200),
    ],
    ids=["429", "500", "504", "task-fail", "malformed"],
)
def test_transient_failures(
    acedata: AceDataProvider, fault_options: dict[str, Any], code: str, status: int
) -> None:
    error = submit_error(acedata, edit_request(provider_options=fault_options))
    assert (error.code, error.retryable, error.status_code) == (code, True, status)
    if status == 429:
        assert error.retry_after == 3.0


def test_hanging_poll_is_a_timeout(sandbox_url: str, receiver: CallbackReceiver) -> None:
    request = edit_request(callback_url=receiver.url)
    hanging_poll_error(AceDataProvider, sandbox_url, "acedata", request)


def test_unknown_task_poll_is_permanent(acedata: AceDataProvider) -> None:
    error = poll_error(acedata, "no-such-task")
    assert (error.code, error.provider_code, error.retryable) == (
        "provider_error",
        "not_found",
        False,
    )


def test_stack_runs_acedata_jobs_and_refuses_foreign_callbacks(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    job = tenant.create_job(
        model="seededit-3.0", prompt="via acedata", image=data_url(png_bytes()), provider="acedata"
    )
    done = tenant.wait_job(job["id"])
    assert (done["status"], done["provider"]) == ("succeeded", "acedata"), done
    with sessions() as session:
        token = session.scalar(select(Job.callback_token).where(Job.id == job["id"]))
    foreign = {"success": True, "task_id": "someone-elses", "trace_id": "t", "data": []}
    events = tenant.events(job["id"])
    response = httpx.post(f"{stack.api_url}/v1/callbacks/acedata/{token}", json=foreign)
    assert response.status_code == 404, response.text
    assert tenant.client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"
    assert tenant.events(job["id"]) == events
