"""HTTP plumbing shared by `Client` and `AsyncClient`: one httpx client each, one retry policy.

Retries are bounded: at most `max_retries` more tries, each waiting the server's
`Retry-After` (or an exponential backoff when it sent none), and a `Retry-After` longer than
`max_retry_wait` is not slept through: the error is raised at once. 429 is always retried
(the server did nothing), and so is a connection that could not be opened; 502/503/504 and
connections lost mid-request only when repeating the request is harmless (GET/DELETE, or a
create carrying its Idempotency-Key).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from editqueue.client.errors import APIError, MissingKey, Unreachable, error_for

DEFAULT_API_URL = "http://127.0.0.1:8080"
API_URL_ENV = "EDITQUEUE_API_URL"
API_KEY_ENV = "EDITQUEUE_API_KEY"
USER_AGENT = "editqueue-python"
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
REPEATABLE_METHODS = frozenset({"GET", "HEAD", "DELETE"})
# Failures before a single byte of the request left: always safe to try again.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Request:
    """One API call, before it is sent."""

    method: str
    path: str
    params: Any = None
    json: Any = None
    data: dict[str, Any] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def repeatable(self) -> bool:
        """Whether sending it twice is harmless."""
        return self.method in REPEATABLE_METHODS or "Idempotency-Key" in self.headers

    def kwargs(self) -> dict[str, Any]:
        """Arguments for httpx's `request`."""
        return {
            "params": self.params,
            "json": self.json,
            "data": self.data,
            "files": self.files,
            "headers": self.headers,
        }


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how long, to retry."""

    max_retries: int = 3
    max_retry_wait: float = 60.0
    backoff: float = 0.5

    def delay(
        self,
        request: Request,
        response: httpx.Response | None,
        attempt: int,
        *,
        sent: bool = True,
    ) -> float | None:
        """Seconds to wait before trying again, or None to give up now.

        `response` None: no answer came (`sent` False when the request never left).
        """
        if attempt >= self.max_retries:
            return None
        if response is None:
            return self._backoff(attempt) if request.repeatable or not sent else None
        status = response.status_code
        if status not in RETRIED_STATUSES or (status != 429 and not request.repeatable):
            return None
        header = response.headers.get("Retry-After", "")
        try:
            wait = max(0.0, float(header))
        except ValueError:
            wait = self._backoff(attempt)
        return wait if wait <= self.max_retry_wait else None

    def _backoff(self, attempt: int) -> float:
        return min(self.max_retry_wait, self.backoff * 2**attempt)


def resolve(api_url: str | None, api_key: str | None) -> tuple[str, str]:
    """The base URL and key, from the arguments or EDITQUEUE_API_URL / EDITQUEUE_API_KEY."""
    url = (api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
    key = api_key or os.environ.get(API_KEY_ENV)
    if not key:
        raise MissingKey(f"no API key: set {API_KEY_ENV} or pass --api-key")
    return url, key


def as_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    """A number of seconds (10 s at most to connect), or an httpx.Timeout as given."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(timeout, connect=min(10.0, timeout))


def with_read_timeout(timeout: httpx.Timeout, read: float) -> httpx.Timeout:
    """The same timeouts with another read timeout (a stream waits longer between bytes)."""
    return httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)


def _problem_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:200] or response.reason_phrase}
    return body if isinstance(body, dict) else {"detail": str(body)[:200]}


def raise_for(response: httpx.Response) -> httpx.Response:
    """The response itself when it succeeded, else the APIError subclass it means."""
    if response.status_code >= 400:
        headers = {k.lower(): v for k, v in response.headers.items()}
        raise error_for(response.status_code, _problem_of(response), headers)
    return response


def unreachable(base_url: str, exc: Exception) -> Unreachable:
    """The error for a request that never got an answer."""
    return Unreachable(f"cannot reach the API at {base_url}: {type(exc).__name__}: {exc}")


def _link_error(url: str, exc: Exception) -> Unreachable:
    return Unreachable(f"cannot download {url.split('?', 1)[0]}: {exc}")


def _auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}


@dataclass(frozen=True)
class Connection:
    """Where the API is, as whom, how long to wait and how often to retry: both transports'."""

    api_url: str
    api_key: str
    timeout: httpx.Timeout
    policy: RetryPolicy

    def api_options(self) -> dict[str, Any]:
        """httpx client arguments for calls to the API (base URL, key, timeouts)."""
        headers = _auth_headers(self.api_key)
        return {"base_url": self.api_url, "headers": headers, "timeout": self.timeout}

    def settle(
        self, request: Request, attempt: int, outcome: httpx.Response | httpx.TransportError
    ) -> httpx.Response | float:
        """The final response (APIError if it failed), or the seconds to wait before retrying.

        `outcome` is the answer, or the error of a try that got none (Unreachable once the
        policy gives up on it).
        """
        if isinstance(outcome, httpx.TransportError):
            sent = not isinstance(outcome, NOT_SENT)
            wait = self.policy.delay(request, None, attempt, sent=sent)
            if wait is None:
                raise unreachable(self.api_url, outcome) from None
            return wait
        delay = self.policy.delay(request, outcome, attempt)
        return raise_for(outcome) if delay is None else delay


def connect(
    api_url: str | None,
    api_key: str | None,
    timeout: float | httpx.Timeout,
    max_retries: int,
    max_retry_wait: float,
) -> Connection:
    """A client's arguments (or EDITQUEUE_API_URL / EDITQUEUE_API_KEY) as a Connection."""
    url, key = resolve(api_url, api_key)
    policy = RetryPolicy(max_retries=max_retries, max_retry_wait=max_retry_wait)
    return Connection(url, key, as_timeout(timeout), policy)


class SyncTransport:
    """The blocking transport."""

    def __init__(self, connection: Connection, transport: httpx.BaseTransport | None = None):
        self.connection = connection
        self.http = httpx.Client(**connection.api_options(), transport=transport)
        # Signed links need no key and may point at another host (S3): never send it there.
        self.links = httpx.Client(timeout=connection.timeout, transport=transport)

    def send(self, request: Request) -> httpx.Response:
        """One call, retried by the policy; raises APIError or Unreachable."""
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = self.http.request(request.method, request.path, **request.kwargs())
            except httpx.TransportError as exc:
                outcome = exc
            settled = self.connection.settle(request, attempt, outcome)
            if isinstance(settled, httpx.Response):
                return settled
            time.sleep(settled)
            attempt += 1

    @contextmanager
    def stream(
        self, path: str, read_timeout: float, headers: dict[str, str]
    ) -> Iterator[httpx.Response]:
        """An open server-sent event stream (not retried: callers fall back to polling)."""
        timeout = with_read_timeout(self.http.timeout, read_timeout)
        headers = {**headers, "Accept": "text/event-stream"}
        with self.http.stream("GET", path, headers=headers, timeout=timeout) as response:
            yield response

    def download(self, url: str) -> bytes:
        """The bytes behind a signed link."""
        try:
            response = self.links.get(url)
        except httpx.TransportError as exc:
            raise _link_error(url, exc) from None
        return raise_for(response).content

    def close(self) -> None:
        self.http.close()
        self.links.close()


class AsyncTransport:
    """The asyncio transport: the same policy over httpx.AsyncClient."""

    def __init__(self, connection: Connection, transport: httpx.AsyncBaseTransport | None = None):
        self.connection = connection
        self.http = httpx.AsyncClient(**connection.api_options(), transport=transport)
        self.links = httpx.AsyncClient(timeout=connection.timeout, transport=transport)

    async def send(self, request: Request) -> httpx.Response:
        """One call, retried by the policy; raises APIError or Unreachable."""
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self.http.request(request.method, request.path, **request.kwargs())
            except httpx.TransportError as exc:
                outcome = exc
            settled = self.connection.settle(request, attempt, outcome)
            if isinstance(settled, httpx.Response):
                return settled
            await asyncio.sleep(settled)
            attempt += 1

    @asynccontextmanager
    async def stream(
        self, path: str, read_timeout: float, headers: dict[str, str]
    ) -> AsyncIterator[httpx.Response]:
        """An open server-sent event stream (not retried: callers fall back to polling)."""
        timeout = with_read_timeout(self.http.timeout, read_timeout)
        headers = {**headers, "Accept": "text/event-stream"}
        async with self.http.stream("GET", path, headers=headers, timeout=timeout) as response:
            yield response

    async def download(self, url: str) -> bytes:
        """The bytes behind a signed link."""
        try:
            response = await self.links.get(url)
        except httpx.TransportError as exc:
            raise _link_error(url, exc) from None
        return raise_for(response).content

    async def close(self) -> None:
        await self.http.aclose()
        await self.links.aclose()


__all__ = [
    "APIError",
    "AsyncTransport",
    "Connection",
    "Request",
    "RetryPolicy",
    "SyncTransport",
    "connect",
]
