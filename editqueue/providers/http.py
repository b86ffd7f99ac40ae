"""HTTP plumbing shared by the vendor adapters: the client, transport errors, Retry-After.

Everything here speaks the public error vocabulary, so adapters only add what is
peculiar to their vendor's envelope.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from editqueue.providers.base import (
    BadOutput,
    CallbackNotice,
    EditRequest,
    ErrorCode,
    OutputRef,
    ProviderError,
    ProviderUnavailable,
    RequestRejected,
    TaskStatus,
)

CONNECT_TIMEOUT = 10.0

# Words vendors use when moderation refused a prompt or an image.
_MODERATION_WORDS = (
    "nsfw",
    "sensitive",
    "moderation",
    "flagged",
    "violat",
    "prohibited",
    "inappropriate",
    "unsafe",
)

# A vendor's mapping of its `{"error": {...}}` envelope: (HTTP status, envelope, Retry-After).
EnvelopeMapper = Callable[[int, Mapping[str, Any], float | None], ProviderError]

_IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


def build_client(
    base_url: str, api_key: str, *, timeout: float, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """One long-lived client per adapter: bearer auth, explicit timeouts, no redirects."""
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
        timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
        follow_redirects=False,
        transport=transport,
    )


class HttpProvider:
    """What every adapter shares: one long-lived client, built at start, closed at the end."""

    name: str

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = build_client(base_url, api_key, timeout=timeout, transport=transport)

    def close(self) -> None:
        """Release the HTTP client."""
        self._client.close()


class SyncHttpProvider(HttpProvider):
    """An adapter whose vendor answers the edit itself: no task to poll, no callback."""

    supports_callback = False
    supports_poll = False

    def poll(self, task_id: str) -> TaskStatus:
        """Synchronous edits never leave a task to poll."""
        message = f"{self.name} has no tasks to poll"
        raise ProviderError("internal_error", message, provider=self.name)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackNotice:
        """Synchronous vendors send no callbacks."""
        raise ValueError(f"{self.name} sends no callbacks")


def send(
    client: httpx.Client, provider: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """Make one request; transport failures become retryable ProviderErrors."""
    try:
        return client.request(method, url, **kwargs)
    except httpx.ConnectTimeout as exc:
        # Nothing was sent yet: the vendor is unreachable rather than slow.
        raise _transport_error("provider_unavailable", provider, "connect timeout") from exc
    except httpx.TimeoutException as exc:
        raise _transport_error("timeout", provider, "no answer in time") from exc
    except httpx.TransportError as exc:
        raise _transport_error("provider_unavailable", provider, type(exc).__name__) from exc


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


def json_or_none(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when the body is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def json_object(provider: str, response: httpx.Response) -> dict[str, Any]:
    """The body of an answer that must be a JSON object; anything else is malformed."""
    body = json_or_none(response)
    if not isinstance(body, dict):
        raise malformed(provider, "body is not a JSON object", status_code=response.status_code)
    return body


def retry_after_of(response: httpx.Response) -> float | None:
    """The answer's `Retry-After`, in seconds, if it has one."""
    return parse_retry_after(response.headers.get("Retry-After"))


def error_from_envelope(
    provider: str, response: httpx.Response, map_error: EnvelopeMapper
) -> ProviderError:
    """A failed answer's error: its `{"error": {...}}` envelope mapped, else its status alone."""
    retry_after = retry_after_of(response)
    body = json_or_none(response)
    envelope = body.get("error") if isinstance(body, dict) else None
    if not isinstance(envelope, dict):
        message = f"{provider} answered HTTP {response.status_code}"
        return error_for_status(provider, response.status_code, message, retry_after=retry_after)
    return map_error(response.status_code, envelope, retry_after)


def result_items(provider: str, body: Mapping[str, Any], status_code: int) -> list[Any]:
    """The non-empty `data` list of an OpenAI-style images answer."""
    items = body.get("data")
    if not isinstance(items, list) or not items:
        raise malformed(provider, "no data", status_code=status_code)
    return items


def usage_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """The answer's `usage` object, or {} when it has none."""
    usage = body.get("usage")
    return dict(usage) if isinstance(usage, dict) else {}


def callback_notice(task_id: str, read_status: Callable[[], TaskStatus]) -> CallbackNotice:
    """A callback's notice; an unreadable status is dropped, as the worker re-reads the task."""
    try:
        status = read_status()
    except ProviderError:
        status = None
    return CallbackNotice(task_id=task_id, status=status)


def status_verdict(status: int | None) -> tuple[ErrorCode, bool]:
    """The public code, and whether to retry, that an HTTP status alone says."""
    if status is None:
        return "provider_error", False
    if status == 429:
        return "rate_limited", True
    if status >= 500:
        return "provider_unavailable", True
    if status == 408:
        return "timeout", True
    if status in (400, 422):
        return "invalid_request", False
    # 401/403/404 and the like: our configuration is wrong, retrying will not help.
    return "provider_error", False


def error_for_status(
    provider: str,
    status: int,
    message: str,
    *,
    provider_code: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The public error for an HTTP status when the vendor's own code says nothing more."""
    return decided_error(provider, None, message, status, False, provider_code, retry_after)


def malformed(provider: str, detail: str, *, status_code: int | None = None) -> ProviderError:
    """A 2xx answer we cannot read: likely a transient glitch, so retryable."""
    return BadOutput(
        "provider_error",
        f"{provider} sent an unreadable answer: {detail}",
        provider=provider,
        retryable=True,
        status_code=status_code,
    )


def decided_error(
    provider: str,
    code: ErrorCode | None,
    message: str,
    status: int | None,
    retryable: bool = False,
    provider_code: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The error a vendor's own code decided (`code`, `retryable`); where it decided nothing,
    what the HTTP status says (`status_verdict`)."""
    if code is None:
        code, retryable = status_verdict(status)
    return mapped_error(
        provider,
        code,
        message,
        retryable=retryable,
        provider_code=provider_code,
        status_code=status,
        retry_after=retry_after,
    )


def mapped_error(
    provider: str,
    code: ErrorCode,
    message: str,
    *,
    retryable: bool = False,
    provider_code: str | None = None,
    status_code: int | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """A ProviderError (the subclass its code names) whose `retry_after` is kept only when
    a retry makes sense."""
    return ProviderError(
        code,
        message,
        provider=provider,
        provider_code=provider_code,
        retryable=retryable,
        retry_after=retry_after if retryable else None,
        status_code=status_code,
    )


def model_id(provider: str, model_ids: Mapping[str, str], request: EditRequest) -> str:
    """The vendor's id for the request's model; invalid_request when it does not serve it."""
    model = model_ids.get(request.model)
    if model is None:
        message = f"{provider} does not serve {request.model}"
        raise RequestRejected("invalid_request", message, provider=provider)
    return model


def served_model(provider: str, model_ids: Mapping[str, str], request: EditRequest) -> str:
    """The vendor's id for the request's model, once the request fits what the vendor takes.

    Refuses models the vendor does not serve, requests without an image, and SeedEdit
    requests with more than one (every vendor's SeedEdit takes exactly one).
    """
    model = model_id(provider, model_ids, request)
    if not request.images:
        raise RequestRejected("invalid_request", "an input image is required", provider=provider)
    if request.model == "seededit-3.0" and len(request.images) != 1:
        raise RequestRejected(
            "invalid_request", "SeedEdit takes exactly one image", provider=provider
        )
    return model


def mentions_moderation(text: str, extra_words: tuple[str, ...] = ()) -> bool:
    """Whether a vendor's error text says moderation refused the content.

    `extra_words` are a vendor's own further wording for a refusal.
    """
    lowered = text.lower()
    return any(word in lowered for word in (*_MODERATION_WORDS, *extra_words))


def output_from_item(provider: str, item: Any) -> OutputRef | None:
    """One result item: a link (`url` or `image_url`) or inline `b64_json`; None if neither."""
    if not isinstance(item, Mapping):
        raise malformed(provider, "result item is not an object")
    for key in ("url", "image_url"):
        if isinstance(item.get(key), str) and item[key]:
            return OutputRef(url=item[key])
    if isinstance(item.get("b64_json"), str) and item["b64_json"]:
        return decode_inline(provider, item["b64_json"])
    return None


def decode_inline(provider: str, payload: str) -> OutputRef:
    """Inline base64 image bytes, typed by their magic number (JPEG when unknown)."""
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise malformed(provider, "b64_json is not valid base64") from None
    return OutputRef(data=data, content_type=sniff_content_type(data) or "image/jpeg")


def sniff_content_type(data: bytes) -> str | None:
    """The image type of inline bytes from their magic number, if recognised."""
    for signature, content_type in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _transport_error(code: ErrorCode, provider: str, detail: str) -> ProviderError:
    message = f"{provider} request failed: {detail}"
    return ProviderUnavailable(code, message, provider=provider, retryable=True)
