"""What the adapter-against-sandbox tests share: inputs, faults, and the common scenarios.

test_vendor_contract.py runs the scenarios for every vendor; the scenarios return the
error so that its spec table can assert each vendor's codes on top of the shared checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx
import pytest

from editqueue.providers.base import EditRequest, InputImage, Provider, ProviderError, TaskStatus
from tests.integration.sandbox_server import poll_until, running_sandbox, sample_image, upload_image

API_KEY = "sandbox-key"
# The key the KIE emulator signs its callbacks with.
WEBHOOK_KEY = "kie-hmac-key"
# A timeout well under the 1.5 s a `hang` fault lasts.
SHORT_TIMEOUT = 0.3

P = TypeVar("P", bound=Provider)

# The fields of every request the tests send to the two task vendors.
KIE_FIELDS = {
    "prompt": "turn it into a watercolour",
    "aspect_ratio": "4:3",
    "resolution": "1K",
    "seed": 11,
}
VTRIX_FIELDS = {"prompt": "change the clothes to pink", "seed": 5, "guidance_scale": 5.5}


def unused_input(
    size: tuple[int, int] = (640, 480),
    fmt: str = "PNG",
    colour: tuple[int, int, int] = (40, 120, 200),
) -> InputImage:
    """A sample picture sent inline; its link points nowhere, as the vendor never fetches it."""
    data = sample_image(size, fmt, colour)
    return InputImage(data, f"image/{fmt.lower()}", "https://unused.test/in.png", *size)


def hosted_input(sandbox_url: str) -> InputImage:
    """A sample picture hosted on the sandbox, for vendors that download their inputs."""
    data = sample_image()
    return InputImage(data, "image/png", upload_image(sandbox_url, data), 640, 480)


def vendor_fixtures(config: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """Module fixtures for adapter tests, to bind at the module's top level:

    sandbox_url, input_image = vendor_fixtures({"latency": 0.3})

    `sandbox_url`: one sandbox for the module, with `config` and the test key;
    `input_image`: a sample picture hosted on it.
    """

    @pytest.fixture(scope="module")
    def sandbox_url() -> Iterator[str]:
        with running_sandbox({"api_keys": API_KEY, **(config or {})}) as url:
            yield url

    @pytest.fixture(scope="module")
    def input_image(sandbox_url: str) -> InputImage:
        return hosted_input(sandbox_url)

    return sandbox_url, input_image


def adapter_fixture(factory: Callable[..., Provider], vendor: str, **options: Any) -> Any:
    """A fixture: `vendor`'s adapter on the module's sandbox, reset for each test."""

    @pytest.fixture
    def provider(sandbox_url: str) -> Iterator[Provider]:
        with fresh_adapter(factory, sandbox_url, vendor, **options) as made:
            yield made

    return provider


def edit_request(model: str = "seededit-3.0", **fields: Any) -> EditRequest:
    """A small edit request; `fields` override the defaults."""
    values: dict[str, Any] = {"job_id": "job_1", "model": model, "prompt": "add snow", "seed": 3}
    values.update(fields)
    if "images" not in values:
        values["images"] = [unused_input()]
    return EditRequest(**values)


def fault(kind: str, **params: Any) -> dict[str, Any]:
    """provider_options that make the sandbox misbehave for this one request."""
    return {"_sandbox": {"fault": kind, "params": params}}


def queue_fault(sandbox_url: str, vendor: str, op: str, kind: str, **params: Any) -> None:
    """Queue a fault for the vendor's next `op` request."""
    spec = {"vendor": vendor, "op": op, "kind": kind, "params": params}
    httpx.post(f"{sandbox_url}/_control/faults", json=spec).raise_for_status()


@contextlib.contextmanager
def adapter(
    factory: Callable[..., P], base_url: str, api_key: str = API_KEY, **options: Any
) -> Iterator[P]:
    """An adapter for the duration of a block, closed afterwards."""
    provider = factory(api_key, base_url, **options)
    try:
        yield provider
    finally:
        provider.close()


@contextlib.contextmanager
def fresh_adapter(
    factory: Callable[..., P], sandbox_url: str, vendor: str, **options: Any
) -> Iterator[P]:
    """An adapter for `vendor` on a sandbox reset to no tasks, faults or counters."""
    httpx.post(f"{sandbox_url}/_control/reset")
    with adapter(factory, f"{sandbox_url}/{vendor}", timeout=10, **options) as provider:
        yield provider


def submit_error(provider: Provider, request: EditRequest) -> ProviderError:
    """The error submitting `request` raises (it must raise one)."""
    with pytest.raises(ProviderError) as info:
        provider.submit(request)
    return info.value


def poll_error(provider: Provider, task_id: str) -> ProviderError:
    """The error polling `task_id` raises (it must raise one)."""
    with pytest.raises(ProviderError) as info:
        provider.poll(task_id)
    return info.value


def poll_until_done(provider: Provider, task_id: str) -> TaskStatus:
    """Poll until the task is no longer running (five seconds at most)."""
    return poll_until(lambda: provider.poll(task_id), lambda status: status.state != "running")


def wrong_key_error(
    factory: Callable[..., Provider], base_url: str, request: EditRequest
) -> ProviderError:
    """The error a submit with a key the sandbox refuses raises: permanent, by contract."""
    with adapter(factory, base_url, "not-the-key") as provider:
        error = submit_error(provider, request)
    assert (error.code, error.retryable) == ("provider_error", False)
    return error


def hanging_submit_error(
    factory: Callable[..., Provider], base_url: str, request: EditRequest
) -> ProviderError:
    """A submit the vendor never answers (a `hang` fault) is a retryable timeout."""
    with adapter(factory, base_url, timeout=SHORT_TIMEOUT) as provider:
        error = submit_error(provider, request)
    assert (error.code, error.retryable) == ("timeout", True)
    return error


def hanging_poll_error(
    factory: Callable[..., Provider], sandbox_url: str, vendor: str, request: EditRequest
) -> ProviderError:
    """A poll the vendor never answers (a queued `hang` fault) is a retryable timeout."""
    base_url = f"{sandbox_url}/{vendor}"
    # Only the poll has the short timeout: a busy machine may take longer to create the task.
    with adapter(factory, base_url, timeout=10) as patient:
        task_id = patient.submit(request).task_id or ""
    with adapter(factory, base_url, timeout=SHORT_TIMEOUT) as provider:
        queue_fault(sandbox_url, vendor, "poll", "hang", seconds=1.5)
        error = poll_error(provider, task_id)
    assert (error.code, error.retryable) == ("timeout", True)
    return error
