"""A small client of the editqueue HTTP API (used by the CLI's client-side commands).

One long-lived httpx client with explicit timeouts; 429 and 503 answers are retried after
their `Retry-After`; problem+json errors become `ApiError`, connection trouble `Unreachable`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8080"
API_URL_ENV = "EDITQUEUE_API_URL"
API_KEY_ENV = "EDITQUEUE_API_KEY"
RETRIED_STATUSES = (429, 503)
MAX_RETRIES = 5


class ClientError(Exception):
    """Base of the client's errors; the message is meant for people."""


class MissingKey(ClientError):
    """No API key was given."""


class Unreachable(ClientError):
    """The API could not be reached at all."""


class ApiError(ClientError):
    """The API answered with an error (RFC 9457 problem details when it sent them)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.code = str(problem.get("code") or "error")
        self.detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        lines = [f"HTTP {status} {self.code}: {self.detail}"]
        lines += [f"  {e.get('field')}: {e.get('message')}" for e in self.errors[:20]]
        if len(self.errors) > 20:
            lines.append(f"  … and {len(self.errors) - 20} more")
        super().__init__("\n".join(lines))


def _problem_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:200] or response.reason_phrase}
    return body if isinstance(body, dict) else {"detail": str(body)[:200]}


def _retry_after(response: httpx.Response, attempt: int) -> float:
    try:
        return min(60.0, max(0.1, float(response.headers.get("Retry-After", ""))))
    except ValueError:
        return min(30.0, 0.5 * 2**attempt)


class Client:
    """The API of one deployment, as one tenant (its API key)."""

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = (api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
        key = api_key or os.environ.get(API_KEY_ENV)
        if not key:
            raise MissingKey(f"no API key: set {API_KEY_ENV} or pass --api-key")
        self._http = httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {key}", "User-Agent": "editqueue-cli"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )
        # Signed links need no key, and may point at another host (S3): never send it there.
        self._links = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=10.0), transport=transport
        )

    def close(self) -> None:
        """Close the connection pools."""
        self._http.close()
        self._links.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, retried on 429/503 after Retry-After; raises on any other error."""
        for attempt in range(MAX_RETRIES + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise Unreachable(f"cannot reach the API at {self.api_url}: {exc}") from None
            if response.status_code in RETRIED_STATUSES and attempt < MAX_RETRIES:
                time.sleep(_retry_after(response, attempt))
                continue
            if response.status_code >= 400:
                raise ApiError(response.status_code, _problem_of(response))
            return response
        raise AssertionError("unreachable")  # the loop always returns or raises

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request whose answer is JSON."""
        return self.send(method, path, **kwargs).json()

    # -- jobs ----------------------------------------------------------------------------

    def get_job(self, job_id: str) -> dict[str, Any]:
        """GET /v1/jobs/{id}."""
        return self.json("GET", f"/v1/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """POST /v1/jobs/{id}/cancel."""
        return self.json("POST", f"/v1/jobs/{job_id}/cancel")

    def list_jobs(self, **params: Any) -> dict[str, Any]:
        """One page of GET /v1/jobs."""
        return self.json("GET", "/v1/jobs", params={k: v for k, v in params.items() if v})

    def iter_jobs(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Every job matching the filters, newest first, across pages."""
        cursor = None
        while True:
            page = self.list_jobs(**params, limit=200, cursor=cursor)
            yield from page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # -- batches -------------------------------------------------------------------------

    def create_batch(
        self,
        jobs: list[dict[str, Any]],
        *,
        defaults: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """POST /v1/batches; returns the batch and whether it already existed (a replay)."""
        body: dict[str, Any] = {"jobs": jobs}
        if defaults:
            body["defaults"] = defaults
        if metadata:
            body["metadata"] = metadata
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = self.send("POST", "/v1/batches", json=body, headers=headers)
        return response.json(), response.headers.get("Idempotent-Replayed") == "true"

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """GET /v1/batches/{id} (live counts)."""
        return self.json("GET", f"/v1/batches/{batch_id}")

    # -- files ---------------------------------------------------------------------------

    def download(self, url: str) -> bytes:
        """The bytes behind a signed output link (sent without the API key)."""
        try:
            response = self._links.get(url)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot download {url.split('?', 1)[0]}: {exc}") from None
        if response.status_code >= 400:
            raise ApiError(response.status_code, _problem_of(response))
        return response.content
