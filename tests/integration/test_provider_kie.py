"""KieProvider against the KIE emulator over loopback: tasks, polling, callbacks, failures."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from editqueue.providers.base import CallbackRejected, EditRequest, InputImage, TaskStatus
from editqueue.providers.kie import KieProvider
from tests.integration.sandbox_server import (
    CallbackReceiver,
    running_receiver,
    running_sandbox,
    upload_image,
)
from tests.integration.vendor_contract import (
    API_KEY,
    adapter,
    edit_request,
    fault,
    fresh_adapter,
    hanging_poll_error,
    hosted_input,
    poll_error,
    poll_until_done,
    queue_fault,
    submit_error,
    wrong_key_error,
)

WEBHOOK_KEY = "kie-hmac-key"


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    config = {"api_keys": API_KEY, "kie_webhook_key": WEBHOOK_KEY, "latency": 0.3}
    with running_sandbox(config) as url:
        yield url


@pytest.fixture(scope="module")
def input_image(sandbox_url: str) -> InputImage:
    return hosted_input(sandbox_url)


@pytest.fixture
def kie(sandbox_url: str) -> Iterator[KieProvider]:
    with fresh_adapter(KieProvider, sandbox_url, "kie", webhook_key=WEBHOOK_KEY) as provider:
        yield provider


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with running_receiver() as callbacks:
        yield callbacks


def _request(image: InputImage, **fields: Any) -> EditRequest:
    values: dict[str, Any] = {
        "prompt": "turn it into a watercolour",
        "images": [image],
        "aspect_ratio": "4:3",
        "resolution": "1K",
        "seed": 11,
    }
    return edit_request("seedream-4.0-edit", **{**values, **fields})


def test_create_poll_and_download(kie: KieProvider, input_image: InputImage) -> None:
    created = kie.submit(_request(input_image, n=2))
    assert created.state == "running" and created.task_id

    status = poll_until_done(kie, created.task_id)
    assert (status.state, status.task_id) == ("succeeded", created.task_id)
    assert len(status.outputs) == 2
    for output in status.outputs:
        picture = Image.open(io.BytesIO(httpx.get(output.url or "").content))
        assert (picture.format, picture.size) == ("PNG", (1024, 768))


def test_running_task_polls_as_running(input_image: InputImage) -> None:
    # A slow sandbox of its own, so the task is surely still running when polled.
    with running_sandbox({"latency": 5}) as url, adapter(KieProvider, f"{url}/kie") as provider:
        task_id = provider.submit(_request(input_image)).task_id or ""
        assert provider.poll(task_id) == TaskStatus(state="running", task_id=task_id)


def test_signed_callback_is_accepted(
    kie: KieProvider, input_image: InputImage, receiver: CallbackReceiver
) -> None:
    task_id = kie.submit(_request(input_image, callback_url=receiver.url)).task_id
    [callback] = receiver.wait_for(1)
    notice = kie.parse_callback(callback.headers, callback.body)
    assert notice.task_id == task_id
    assert notice.status is not None and notice.status.state == "succeeded"
    assert notice.status.outputs


def test_callback_with_a_wrong_signature_is_refused(
    sandbox_url: str, kie: KieProvider, input_image: InputImage, receiver: CallbackReceiver
) -> None:
    kie.submit(_request(input_image, callback_url=receiver.url))
    [callback] = receiver.wait_for(1)
    other_url = f"{sandbox_url}/kie"
    with (
        adapter(KieProvider, other_url, webhook_key="someone-elses-key") as other_key,
        pytest.raises(CallbackRejected),
    ):
        other_key.parse_callback(callback.headers, callback.body)
    forged = {**callback.headers, "X-Webhook-Signature": "AAAA"}
    with pytest.raises(CallbackRejected):
        kie.parse_callback(forged, callback.body)


def test_unsigned_callback_refused_with_a_key_accepted_without(
    input_image: InputImage, receiver: CallbackReceiver
) -> None:
    with running_sandbox({"latency": 0.1}) as url:
        image = InputImage(
            input_image.data, "image/png", upload_image(url, input_image.data), 640, 480
        )
        with (
            adapter(KieProvider, f"{url}/kie", webhook_key=WEBHOOK_KEY) as keyed,
            adapter(KieProvider, f"{url}/kie") as keyless,
        ):
            task_id = keyless.submit(_request(image, callback_url=receiver.url)).task_id
            [callback] = receiver.wait_for(1)
            with pytest.raises(CallbackRejected):
                keyed.parse_callback(callback.headers, callback.body)
            assert keyless.parse_callback(callback.headers, callback.body).task_id == task_id


def test_early_callback_arrives_before_submit_returns(
    kie: KieProvider, input_image: InputImage, receiver: CallbackReceiver
) -> None:
    request = _request(
        input_image, callback_url=receiver.url, provider_options=fault("callback_early")
    )
    task_id = kie.submit(request).task_id
    [callback] = receiver.received
    assert kie.parse_callback(callback.headers, callback.body).task_id == task_id


def test_wrong_key_is_a_permanent_provider_error(sandbox_url: str, input_image: InputImage) -> None:
    error = wrong_key_error(KieProvider, f"{sandbox_url}/kie", _request(input_image))
    assert (error.code, error.provider_code, error.retryable, error.status_code) == (
        "provider_error",
        "401",
        False,
        401,
    )


@pytest.mark.parametrize(
    "options",
    [{"image_size": "giant"}, {"max_images": 9}, {"image_urls": ["https://127.0.0.1:1/x.png"]}],
    ids=["image_size", "max_images", "unreachable-image"],
)
def test_validation_is_invalid_request(
    kie: KieProvider, input_image: InputImage, options: dict[str, Any]
) -> None:
    error = submit_error(kie, _request(input_image, provider_options=options))
    assert (error.code, error.provider_code, error.retryable) == (
        "invalid_request",
        "422",
        False,
    )


@pytest.mark.parametrize(
    ("kind", "code", "retryable"),
    [("task_fail", "provider_unavailable", True), ("moderation", "content_rejected", False)],
)
def test_failed_tasks(
    kie: KieProvider, input_image: InputImage, kind: str, code: str, retryable: bool
) -> None:
    created = kie.submit(_request(input_image, provider_options=fault(kind)))
    status = poll_until_done(kie, created.task_id or "")
    assert status.state == "failed" and status.error is not None
    assert (status.error.code, status.error.retryable) == (code, retryable)


def test_rate_limited_poll_carries_retry_after(
    kie: KieProvider, input_image: InputImage, sandbox_url: str
) -> None:
    task_id = kie.submit(_request(input_image)).task_id or ""
    queue_fault(sandbox_url, "kie", "poll", "rate_limit", retry_after=4)
    error = poll_error(kie, task_id)
    assert (error.code, error.retryable, error.retry_after) == ("rate_limited", True, 4.0)
    assert kie.poll(task_id).task_id == task_id


@pytest.mark.parametrize(
    ("kind", "params", "code", "provider_code"),
    [
        ("server_error", {"status": 500}, "provider_unavailable", "500"),
        ("server_error", {"status": 503}, "provider_unavailable", "455"),
        ("malformed", {}, "provider_error", None),
    ],
    ids=["500", "503", "malformed"],
)
def test_transient_create_failures(
    kie: KieProvider,
    input_image: InputImage,
    sandbox_url: str,
    kind: str,
    params: dict[str, Any],
    code: str,
    provider_code: str | None,
) -> None:
    queue_fault(sandbox_url, "kie", "create", kind, **params)
    error = submit_error(kie, _request(input_image))
    assert (error.code, error.retryable, error.provider_code) == (code, True, provider_code)


def test_hanging_poll_is_a_timeout(sandbox_url: str, input_image: InputImage) -> None:
    hanging_poll_error(KieProvider, sandbox_url, "kie", _request(input_image))
