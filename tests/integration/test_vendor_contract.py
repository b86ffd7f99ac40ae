"""What every vendor adapter must do against its emulator, one spec row per vendor.

Each test runs once per vendor (or per vendor that can do the thing: tasks, polls,
callbacks). What only one vendor does stays in its own test_provider_<vendor>.py.
"""

from __future__ import annotations

import dataclasses
import io
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest
from PIL import Image

from editqueue.providers.acedata import AceDataProvider
from editqueue.providers.ark import ArkProvider
from editqueue.providers.base import EditRequest, InputImage, Provider, ProviderError
from editqueue.providers.cometapi import CometApiProvider
from editqueue.providers.kie import KieProvider
from editqueue.providers.vtrix import VtrixProvider
from tests.integration.sandbox_server import CallbackReceiver, running_receiver
from tests.integration.vendor_contract import (
    KIE_FIELDS,
    VTRIX_FIELDS,
    WEBHOOK_KEY,
    adapter,
    edit_request,
    fault,
    fresh_adapter,
    hanging_poll_error,
    hanging_submit_error,
    poll_error,
    poll_until_done,
    queue_fault,
    submit_error,
    unused_input,
    vendor_fixtures,
    wrong_key_error,
)


class _Open:
    """Equal to every value: a field the contract leaves open for a vendor."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Open()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a vendor's trouble must surface; ANY where the contract leaves a field open."""

    code: str
    retryable: bool
    provider_code: Any = ANY
    status_code: Any = ANY
    message: Any = ANY

    def check(self, error: ProviderError | None, vendor: str) -> None:
        """Assert that `error` is this outcome, raised by `vendor`'s adapter."""
        assert error is not None
        seen = (error.code, error.retryable, error.provider_code, error.status_code)
        assert seen == (self.code, self.retryable, self.provider_code, self.status_code)
        assert error.message == self.message
        assert error.provider == vendor


def unavailable(status: int, provider_code: Any = ANY) -> Outcome:
    """A retryable vendor outage answered with `status`."""
    return Outcome("provider_unavailable", True, provider_code, status)


@dataclasses.dataclass(frozen=True)
class Vendor:
    """One row of the contract: the adapter, its requests, and what its answers must map to."""

    name: str
    factory: Callable[..., Provider]
    model: str = "seededit-3.0"
    # Request fields every request carries, and those of the plain successful edit.
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    happy: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    hosted_input: bool = False  # the vendor downloads its inputs rather than taking them inline
    adapter_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tasks: bool = False  # submit answers `running`; the result comes by polling
    polls: bool = False
    callbacks: bool = False
    # Transport faults (rate limits, outages, bad answers, hangs) go in the request body
    # ("options") or on the sandbox's control queue ("queue").
    injects: str = "options"
    picture: tuple[str, tuple[int, int], int] = ("JPEG", (1152, 864), 1)
    usage: Callable[[Mapping[str, Any]], bool] = lambda usage: True
    names_task: bool = True  # even a synchronous answer carries a task id
    progress: bool = False
    task_fail: Outcome = Outcome("provider_unavailable", True, ANY, 500)
    moderation: Outcome = Outcome("content_rejected", False)
    server_errors: Mapping[int, Outcome] = dataclasses.field(default_factory=dict)
    malformed: Outcome = Outcome("provider_error", True)
    rate_limit_code: Any = ANY
    wrong_key: Outcome = Outcome("provider_error", False)
    unknown_task: Outcome | None = None

    def request(self, image: InputImage, **fields: Any) -> EditRequest:
        """A request to this vendor with its defaults, `fields` on top."""
        return edit_request(self.model, **{"images": [image], **self.defaults, **fields})


VENDORS = [
    Vendor(
        "ark",
        ArkProvider,
        usage=lambda usage: usage["generated_images"] == 1,
        names_task=False,
        moderation=Outcome("content_rejected", False, "SensitiveContentDetected"),
        server_errors={502: unavailable(502), 503: unavailable(503)},
        malformed=Outcome("provider_error", True, status_code=200),
        rate_limit_code="RateLimitExceeded.EndpointRPMExceeded",
        wrong_key=Outcome("provider_error", False, "AuthenticationError", 401),
    ),
    Vendor(
        "cometapi",
        CometApiProvider,
        happy={"guidance_scale": 7.0, "watermark": True},
        usage=lambda usage: usage["generated_images"] == 1,
        names_task=False,
        moderation=Outcome("content_rejected", False, "SensitiveContentDetected"),
        server_errors={502: unavailable(502), 504: Outcome("timeout", True, status_code=504)},
        malformed=Outcome("provider_error", True, status_code=200),
        wrong_key=Outcome("provider_error", False, status_code=401),
    ),
    Vendor(
        "acedata",
        AceDataProvider,
        happy={"guidance_scale": 6.0},
        polls=True,
        callbacks=True,
        moderation=Outcome("content_rejected", False, "forbidden", 403),
        server_errors={500: unavailable(500), 504: Outcome("timeout", True, status_code=504)},
        malformed=Outcome("provider_error", True, status_code=200),
        wrong_key=Outcome("provider_error", False, "invalid_token"),
        unknown_task=Outcome("provider_error", False, "not_found"),
    ),
    Vendor(
        "kie",
        KieProvider,
        model="seedream-4.0-edit",
        defaults=KIE_FIELDS,
        happy={"n": 2},
        hosted_input=True,
        adapter_options={"webhook_key": WEBHOOK_KEY},
        tasks=True,
        polls=True,
        callbacks=True,
        injects="queue",
        picture=("PNG", (1024, 768), 2),
        task_fail=Outcome("provider_unavailable", True),
        server_errors={500: unavailable(ANY, "500"), 503: unavailable(ANY, "455")},
        malformed=Outcome("provider_error", True, None),
        wrong_key=Outcome("provider_error", False, "401", 401),
        unknown_task=Outcome("provider_error", False),
    ),
    Vendor(
        "vtrix",
        VtrixProvider,
        defaults=VTRIX_FIELDS,
        happy={"guidance_scale": 10.0},
        hosted_input=True,
        tasks=True,
        polls=True,
        injects="queue",
        usage=lambda usage: usage["total_tokens"] > 0,
        progress=True,
        task_fail=Outcome(
            "provider_unavailable", True, "3014095", message="Internal generation error"
        ),
        server_errors={500: unavailable(500)},
        rate_limit_code="1002",
        wrong_key=Outcome("provider_error", False, status_code=401),
        unknown_task=Outcome("provider_error", False, status_code=404),
    ),
]


def vendors(where: Callable[[Vendor], bool] = lambda vendor: True) -> list[Any]:
    """The rows `where` accepts, as parameters named after their vendor."""
    return [pytest.param(vendor, id=vendor.name) for vendor in VENDORS if where(vendor)]


sandbox_url, input_image = vendor_fixtures({"kie_webhook_key": WEBHOOK_KEY, "latency": 0.3})


@pytest.fixture
def callbacks() -> Iterator[CallbackReceiver]:
    with running_receiver() as received:
        yield received


class Case:
    """One vendor's adapter on a fresh sandbox, and the requests and faults for it."""

    def __init__(self, vendor: Vendor, provider: Provider, sandbox_url: str, image: InputImage):
        self.vendor = vendor
        self.provider = provider
        self.sandbox_url = sandbox_url
        self.image = image

    def request(self, **fields: Any) -> EditRequest:
        return self.vendor.request(self.image, **fields)

    def faulty_request(self, kind: str, **params: Any) -> EditRequest:
        """A request whose create call meets the transport fault `kind`, as the vendor injects."""
        if self.vendor.injects == "queue":
            queue_fault(self.sandbox_url, self.vendor.name, "create", kind, **params)
            return self.request()
        return self.request(provider_options=fault(kind, **params))

    def failure(self, kind: str) -> ProviderError | None:
        """The error a `kind` outcome fault ends in: at submit, or on the finished task."""
        request = self.request(provider_options=fault(kind))
        if not self.vendor.tasks:
            return submit_error(self.provider, request)
        status = poll_until_done(self.provider, self.provider.submit(request).task_id or "")
        assert status.state == "failed"
        return status.error

    def task_request(self, callbacks: CallbackReceiver) -> EditRequest:
        """A request that runs as a task (AceData only does so with a callback)."""
        return self.request(callback_url=callbacks.url if self.vendor.callbacks else None)


@pytest.fixture
def case(request: pytest.FixtureRequest, sandbox_url: str) -> Iterator[Case]:
    vendor: Vendor = request.param
    image = unused_input()
    if vendor.hosted_input:
        image = request.getfixturevalue("input_image")
    options = vendor.adapter_options
    with fresh_adapter(vendor.factory, sandbox_url, vendor.name, **options) as provider:
        yield Case(vendor, provider, sandbox_url, image)


def each(where: Callable[[Vendor], bool] = lambda vendor: True) -> pytest.MarkDecorator:
    """Run the test once per vendor that `where` accepts, with its `case`."""
    return pytest.mark.parametrize("case", vendors(where), indirect=True)


@each()
def test_capabilities_are_declared(case: Case) -> None:
    provider, vendor = case.provider, case.vendor
    assert provider.name == vendor.name
    assert (provider.supports_poll, provider.supports_callback) == (vendor.polls, vendor.callbacks)


@each()
def test_submit_ends_in_downloadable_outputs(case: Case) -> None:
    provider, vendor = case.provider, case.vendor
    status = provider.submit(case.request(**vendor.happy))
    if vendor.tasks:
        assert status.state == "running" and status.task_id
        assert (status.progress is not None) == vendor.progress
        task_id = status.task_id
        status = poll_until_done(provider, task_id)
        assert status.task_id == task_id
    assert status.state == "succeeded"
    assert bool(status.task_id) == vendor.names_task
    assert vendor.usage(status.usage)
    fmt, size, count = vendor.picture
    assert len(status.outputs) == count
    for output in status.outputs:
        assert output.url is not None
        picture = Image.open(io.BytesIO(httpx.get(output.url).content))
        assert (picture.format, picture.size) == (fmt, size)


@pytest.mark.parametrize("kind", ["task_fail", "moderation"])
@each()
def test_failed_edits_map_to_our_codes(case: Case, kind: str) -> None:
    outcome: Outcome = getattr(case.vendor, kind)
    outcome.check(case.failure(kind), case.vendor.name)


@each()
def test_server_errors_are_retryable(case: Case) -> None:
    assert case.vendor.server_errors
    for status, outcome in case.vendor.server_errors.items():
        request = case.faulty_request("server_error", status=status)
        outcome.check(submit_error(case.provider, request), case.vendor.name)


@each()
def test_malformed_answer_is_a_retryable_provider_error(case: Case) -> None:
    error = submit_error(case.provider, case.faulty_request("malformed"))
    case.vendor.malformed.check(error, case.vendor.name)


@each(lambda vendor: vendor.tasks)
def test_malformed_poll_is_retryable(case: Case) -> None:
    task_id = case.provider.submit(case.request()).task_id or ""
    queue_fault(case.sandbox_url, case.vendor.name, "poll", "malformed")
    error = poll_error(case.provider, task_id)
    assert (error.code, error.retryable) == ("provider_error", True)
    assert case.provider.poll(task_id).task_id == task_id


@each()
def test_rate_limit_carries_retry_after_and_passes(case: Case) -> None:
    vendor = case.vendor
    queue_fault(case.sandbox_url, vendor.name, "create", "rate_limit", retry_after=5)
    error = submit_error(case.provider, case.request())
    Outcome("rate_limited", True, vendor.rate_limit_code, 429).check(error, vendor.name)
    assert error.retry_after == 5.0
    expected = "running" if vendor.tasks else "succeeded"
    assert case.provider.submit(case.request()).state == expected


@each(lambda vendor: vendor.tasks)
def test_rate_limited_poll_carries_retry_after(case: Case) -> None:
    task_id = case.provider.submit(case.request()).task_id or ""
    queue_fault(case.sandbox_url, case.vendor.name, "poll", "rate_limit", retry_after=4)
    error = poll_error(case.provider, task_id)
    assert (error.code, error.retryable, error.retry_after) == ("rate_limited", True, 4.0)
    assert case.provider.poll(task_id).task_id == task_id


@each()
def test_wrong_key_is_a_permanent_provider_error(case: Case, sandbox_url: str) -> None:
    vendor = case.vendor
    error = wrong_key_error(vendor.factory, f"{sandbox_url}/{vendor.name}", case.request())
    vendor.wrong_key.check(error, vendor.name)


@each()
def test_hanging_submit_is_a_timeout(case: Case, sandbox_url: str) -> None:
    request = case.faulty_request("hang", seconds=1.5)
    hanging_submit_error(case.vendor.factory, f"{sandbox_url}/{case.vendor.name}", request)


@each(lambda vendor: vendor.polls)
def test_hanging_poll_is_a_timeout(
    case: Case, sandbox_url: str, callbacks: CallbackReceiver
) -> None:
    vendor, request = case.vendor, case.task_request(callbacks)
    hanging_poll_error(vendor.factory, sandbox_url, vendor.name, request)


@each(lambda vendor: vendor.polls)
def test_unknown_task_poll_is_permanent(case: Case) -> None:
    assert case.vendor.unknown_task is not None
    case.vendor.unknown_task.check(poll_error(case.provider, "no-such-task"), case.vendor.name)


@each()
def test_unreachable_vendor_is_unavailable(case: Case) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{case.vendor.name}"
    with adapter(case.vendor.factory, url, timeout=2) as provider:
        error = submit_error(provider, case.request())
    assert (error.code, error.retryable) == ("provider_unavailable", True)


@each(lambda vendor: vendor.callbacks)
def test_callback_names_the_task_and_polling_agrees(
    case: Case, callbacks: CallbackReceiver
) -> None:
    provider = case.provider
    created = provider.submit(case.request(callback_url=callbacks.url))
    assert created.state == "running" and created.task_id
    # Polling is the safety net: running first, then what the callback said.
    assert provider.poll(created.task_id).state == "running"
    [callback] = callbacks.wait_for(1)
    notice = provider.parse_callback(callback.headers, callback.body)
    assert notice.task_id == created.task_id
    assert notice.status is not None and notice.status.state == "succeeded"
    assert notice.status.outputs
    assert poll_until_done(provider, created.task_id).outputs == notice.status.outputs


@each(lambda vendor: vendor.callbacks)
def test_early_callback_arrives_before_submit_returns(
    case: Case, callbacks: CallbackReceiver
) -> None:
    request = case.request(callback_url=callbacks.url, provider_options=fault("callback_early"))
    task_id = case.provider.submit(request).task_id
    [callback] = callbacks.received
    assert case.provider.parse_callback(callback.headers, callback.body).task_id == task_id


@pytest.mark.parametrize("kind", ["task_fail", "moderation"])
@each(lambda vendor: vendor.callbacks)
def test_failed_tasks_call_back_and_poll_as_failed(
    case: Case, callbacks: CallbackReceiver, kind: str
) -> None:
    provider, outcome = case.provider, getattr(case.vendor, kind)
    request = case.request(callback_url=callbacks.url, provider_options=fault(kind))
    task_id = provider.submit(request).task_id or ""
    [callback] = callbacks.wait_for(1)
    for status in (
        provider.parse_callback(callback.headers, callback.body).status,
        poll_until_done(provider, task_id),
    ):
        assert status is not None and status.state == "failed" and status.error is not None
        assert (status.error.code, status.error.retryable) == (outcome.code, outcome.retryable)
