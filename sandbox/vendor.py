"""What every vendor emulator shares: auth, faults, value checks, rendering, callbacks."""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import httpx
from flask import Request, Response, current_app
from flask import request as incoming_request

from sandbox.config import SandboxConfig
from sandbox.faults import (
    BODY_FIELD,
    FAULT_HEADER,
    Fault,
    FaultSpecError,
    parse_body,
    parse_header,
)
from sandbox.imaging import RESOLUTION_LONG_SIDE, edit_image, size_for_aspect
from sandbox.inputs import LoadedImage
from sandbox.state import Sandbox, sandbox_of

# A JSON document cut off mid-way, as a proxy that drops the connection might deliver it.
MALFORMED_BODY = '{"created": 1753847978, "data": [{"url": "https://'
DEFAULT_HANG_SECONDS = 60.0
SEED_MAX = 2**31 - 1
log = logging.getLogger(__name__)
_WXH = re.compile(r"^(\d{2,5})x(\d{2,5})$")
# A vendor's refusal exception (its error envelope).
RefusalT = TypeVar("RefusalT", bound=Exception)


class ErrorStyle(Protocol):
    """How one vendor spells the errors that faults produce."""

    def rate_limited(self, retry_after: float) -> Response:
        """The vendor's 429 answer."""
        ...

    def server_error(self, status: int) -> Response:
        """The vendor's 5xx answer."""
        ...


def answer(
    vendor: str,
    op: str,
    handle: Callable[[Sandbox], Response],
    refusal: type[RefusalT],
    respond: Callable[[RefusalT], Response],
) -> Response:
    """Count one API request, run its handler, and answer a refusal in the vendor's envelope."""
    sandbox = sandbox_of(current_app)
    sandbox.stats.request(vendor, op)
    try:
        return handle(sandbox)
    except refusal as error:
        return respond(error)


def is_authorized(config: SandboxConfig, request: Request) -> bool:
    """A non-empty bearer key, and one of SANDBOX_API_KEYS when that list is set."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return False
    return config.api_keys is None or key in config.api_keys


def public_base_url(config: SandboxConfig, request: Request) -> str:
    """Where clients reach this sandbox: SANDBOX_PUBLIC_URL, else the request's host."""
    return config.public_url or request.host_url.rstrip("/")


def choose_fault(
    sandbox: Sandbox, vendor: str, op: str, request: Request, body: Mapping[str, Any] | None
) -> Fault | None:
    """The fault for this request: header, then `_sandbox` body field, then the queue.

    Raises FaultSpecError when the header or body asks for something unknown.
    """
    header = request.headers.get(FAULT_HEADER)
    if header:
        return parse_header(header)
    spec = find_body_spec(body)
    if spec is not None:
        return parse_body(spec)
    return sandbox.faults.take(vendor, op)


def find_body_spec(body: Mapping[str, Any] | None) -> Any:
    """The `_sandbox` field at the top of a body or inside its `input` object."""
    if not isinstance(body, Mapping):
        return None
    if BODY_FIELD in body:
        return body[BODY_FIELD]
    nested = body.get("input")
    return nested.get(BODY_FIELD) if isinstance(nested, Mapping) else None


def apply_transport_fault(fault: Fault | None, style: ErrorStyle) -> Response | None:
    """Act out latency/hang (then carry on) or answer rate_limit/server_error/malformed."""
    if fault is None:
        return None
    if fault.kind == "latency":
        time.sleep(fault.number("seconds", 1.0))
    elif fault.kind == "hang":
        time.sleep(fault.number("seconds", DEFAULT_HANG_SECONDS))
    elif fault.kind == "rate_limit":
        return style.rate_limited(fault.number("retry_after", 1.0))
    elif fault.kind == "server_error":
        return style.server_error(int(fault.number("status", 500)))
    elif fault.kind == "malformed":
        return Response(MALFORMED_BODY, status=200, content_type="application/json")
    return None


def take_fault(
    sandbox: Sandbox,
    vendor: str,
    op: str,
    body: Mapping[str, Any] | None,
    style: ErrorStyle,
    refuse: Callable[[str], Exception],
) -> tuple[Fault | None, Response | None]:
    """This request's fault, and the answer a transport fault gives instead (if any).

    An unusable fault request is raised as `refuse(reason)`, in the vendor's envelope.
    """
    try:
        fault = choose_fault(sandbox, vendor, op, incoming_request, body)
    except FaultSpecError as exc:
        raise refuse(str(exc)) from None
    return fault, apply_transport_fault(fault, style)


def planned_failure(
    fault: Fault | None, *, failure: tuple[str, str], moderation: tuple[str, str]
) -> tuple[str, str] | None:
    """(code, message) a task_fail or moderation fault makes a task end with, else None.

    The vendor's defaults can be overridden with the fault's `code` and `message`.
    """
    if fault is None or fault.kind not in ("task_fail", "moderation"):
        return None
    code, message = failure if fault.kind == "task_fail" else moderation
    return fault.text("code", code), fault.text("message", message)


def wants_early_callback(fault: Fault | None) -> bool:
    """Whether the fault asks for the callback before the create answer."""
    return fault is not None and fault.kind == "callback_early"


def retry_after_header(seconds: float) -> dict[str, str]:
    """A `Retry-After` header in whole seconds (HTTP allows no fractions)."""
    return {"Retry-After": str(max(0, math.ceil(seconds)))}


def is_int(value: Any) -> bool:
    """A JSON integer (booleans are ints to Python, never to a vendor)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A JSON number, booleans excluded."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_wxh(value: Any) -> tuple[int, int] | None:
    """`"WxH"` as (width, height), or None when `value` is not spelled that way."""
    match = _WXH.match(value) if isinstance(value, str) else None
    return (int(match[1]), int(match[2])) if match else None


def seedream_size(value: Any, input_ratio: float) -> tuple[int, int] | None:
    """Seedream 4.0 output size: `1K`/`2K`/`4K` keep the input aspect, `WxH` within Ark's
    pixel and ratio bounds; None when `value` is neither."""
    if value in RESOLUTION_LONG_SIDE:
        long_side = RESOLUTION_LONG_SIDE[value]
        if input_ratio >= 1:
            return size_for_aspect(round(input_ratio * 1000), 1000, long_side)
        return size_for_aspect(1000, round(1000 / input_ratio), long_side)
    size = parse_wxh(value)
    if size is None:
        return None
    width, height = size
    if not 1280 * 720 <= width * height <= 4096 * 4096 or not 1 / 16 <= width / height <= 16:
        return None
    return size


# The edit is a pure function of its inputs, so repeated requests (a benchmark's thousand
# identical jobs, a client's retry) reuse the rendering instead of paying Pillow again; a
# "zero-latency" vendor should cost the service under test, not the emulator, the CPU.
@functools.lru_cache(maxsize=32)
def render_edits(
    source: bytes,
    *,
    prompt: str,
    seed: int,
    size: tuple[int, int],
    count: int,
    watermark: bool,
    image_format: str = "JPEG",
) -> tuple[bytes, ...]:
    """`count` edited variants of `source`, as `image_format` bytes."""
    return tuple(
        edit_image(
            source,
            prompt=prompt,
            seed=seed,
            size=size,
            image_format=image_format,
            variant=variant,
            watermark=watermark,
        )
        for variant in range(count)
    )


class EditSpec(Protocol):
    """What a validated request asks to render (`generations.Edit`, `timed_tasks.TimedTask`)."""

    images: list[LoadedImage]
    outputs: int
    prompt: str
    seed: int
    size: tuple[int, int]
    watermark: bool


def render_spec(spec: EditSpec, image_format: str = "JPEG") -> tuple[bytes, ...]:
    """The request's edited variants of its first image (cached by `render_edits`)."""
    return render_edits(
        spec.images[0].data,
        prompt=spec.prompt,
        seed=spec.seed,
        size=spec.size,
        count=spec.outputs,
        watermark=spec.watermark,
        image_format=image_format,
    )


# One client for every callback: a new one per POST (httpx.post) builds an SSL context
# each time, some 30 ms that would count as the receiving service's latency.
_CALLBACK_CLIENT = httpx.Client()


def deliver_callback(
    sandbox: Sandbox,
    vendor: str,
    url: str,
    body: Callable[[], dict[str, Any]],
    fault: Fault | None,
    headers: Callable[[], Mapping[str, str]] | None = None,
) -> None:
    """POST `body()` to a callback URL, acting out callback faults (lost, latency, duplicate).

    `fault` is the task's own fault; without one, a queued `callback` fault is taken.
    `headers()` is asked again for every copy sent, so a signature can cover its send time.
    """
    fault = fault or sandbox.faults.take(vendor, "callback")
    if fault is not None and fault.kind == "callback_lost":
        sandbox.stats.callback(vendor, "lost")
        return
    if fault is not None and fault.kind == "latency":
        time.sleep(fault.number("seconds", 1.0))
    payload = json.dumps(body()).encode()
    copies = 2 if fault is not None and fault.kind == "callback_duplicate" else 1
    for _ in range(copies):
        try:
            response = _CALLBACK_CLIENT.post(
                url,
                content=payload,
                headers={"Content-Type": "application/json", **(headers() if headers else {})},
                timeout=sandbox.config.fetch_timeout,
            )
            outcome = "sent" if response.is_success else "failed"
        except httpx.HTTPError as exc:
            log.info("%s callback to %s failed: %s", vendor, url, exc)
            outcome = "failed"
        sandbox.stats.callback(vendor, outcome)
