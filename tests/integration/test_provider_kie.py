"""KieProvider against the KIE emulator: what only KIE does (signatures, its checks).

What every vendor does is in test_vendor_contract.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from editqueue.providers.base import CallbackRejected, EditRequest, InputImage, TaskStatus
from editqueue.providers.kie import KieProvider
from tests.integration.sandbox_server import (
    CallbackReceiver,
    running_receiver,
    running_sandbox,
    upload_image,
)
from tests.integration.vendor_contract import (
    KIE_FIELDS,
    WEBHOOK_KEY,
    adapter,
    adapter_fixture,
    edit_request,
    submit_error,
    vendor_fixtures,
)

sandbox_url, input_image = vendor_fixtures({"kie_webhook_key": WEBHOOK_KEY, "latency": 0.3})
kie = adapter_fixture(KieProvider, "kie", webhook_key=WEBHOOK_KEY)


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with running_receiver() as callbacks:
        yield callbacks


def _request(image: InputImage, **fields: Any) -> EditRequest:
    return edit_request("seedream-4.0-edit", **{"images": [image], **KIE_FIELDS, **fields})


def test_running_task_polls_as_running(input_image: InputImage) -> None:
    # A slow sandbox of its own, so the task is surely still running when polled.
    with running_sandbox({"latency": 5}) as url, adapter(KieProvider, f"{url}/kie") as provider:
        task_id = provider.submit(_request(input_image)).task_id or ""
        assert provider.poll(task_id) == TaskStatus(state="running", task_id=task_id)


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
