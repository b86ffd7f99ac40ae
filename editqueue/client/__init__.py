"""The typed Python SDK of the editqueue API.

    from editqueue import Client
    client = Client()  # EDITQUEUE_API_URL / EDITQUEUE_API_KEY, or Client(api_url, api_key)
    job = client.jobs.create(model="seededit-3.0", prompt="make it snowy", images=[Path("in.png")])
    job = client.jobs.wait(job.id, timeout=120)
    client.jobs.download(job, "out/")

`AsyncClient` has the same resources with `await`. Errors are `APIError` subclasses chosen
from the problem's code and status (errors.py).
"""

from __future__ import annotations

from typing import Generic, TypeVar

import httpx

from editqueue.client._transport import (
    API_KEY_ENV,
    API_URL_ENV,
    DEFAULT_API_URL,
    AsyncTransport,
    Connection,
    Request,
    SyncTransport,
    connect,
)
from editqueue.client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequest,
    BudgetExceeded,
    ClientError,
    Conflict,
    IdempotencyKeyReused,
    JobFinished,
    MissingKey,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    Unreachable,
    ValidationFailed,
    WaitTimeout,
)
from editqueue.client.models import (
    Batch,
    Delivery,
    Event,
    Job,
    JobEvent,
    Output,
    Usage,
    WebhookEndpoint,
)
from editqueue.client.resources.batches import AsyncBatches, Batches
from editqueue.client.resources.jobs import AsyncJobs, Jobs
from editqueue.client.resources.webhook_endpoints import AsyncWebhookEndpoints, WebhookEndpoints
from editqueue.client.resources.webhooks import AsyncWebhooks, InvalidSignature, Webhooks

DEFAULT_TIMEOUT = 60.0
T = TypeVar("T")


def _usage_request(date_from: str | None, date_to: str | None, group_by: str | None) -> Request:
    query = {"from": date_from, "to": date_to, "group_by": group_by}
    return Request("GET", "/v1/usage", params={k: v for k, v in query.items() if v})


class _ClientBase(Generic[T]):
    """The constructor both clients share; T is the httpx transport type each one takes."""

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        webhook_secret: str | None = None,
        transport: T | None = None,
    ) -> None:
        connection = connect(api_url, api_key, timeout, max_retries, max_retry_wait)
        self.api_url = connection.api_url
        self._open(connection, transport, webhook_secret)

    def _open(self, connection: Connection, transport: T | None, secret: str | None) -> None:
        raise NotImplementedError


class Client(_ClientBase[httpx.BaseTransport]):
    """The API of one deployment, as one tenant (its API key)."""

    def _open(
        self, connection: Connection, transport: httpx.BaseTransport | None, secret: str | None
    ) -> None:
        self._transport = SyncTransport(connection, transport)
        self.jobs = Jobs(self._transport)
        self.batches = Batches(self._transport)
        self.webhook_endpoints = WebhookEndpoints(self._transport)
        self.webhooks = Webhooks(self._transport, secret)

    def usage(
        self, *, date_from: str | None = None, date_to: str | None = None, group_by: str = "day"
    ) -> Usage:
        """`GET /v1/usage`: jobs, images and cost per day, model or provider."""
        response = self._transport.send(_usage_request(date_from, date_to, group_by))
        return Usage.model_validate(response.json())

    def close(self) -> None:
        """Close the connection pools."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AsyncClient(_ClientBase[httpx.AsyncBaseTransport]):
    """The same API for asyncio: every call is awaited, lists are `async for`."""

    def _open(
        self, connection: Connection, transport: httpx.AsyncBaseTransport | None, secret: str | None
    ) -> None:
        self._transport = AsyncTransport(connection, transport)
        self.jobs = AsyncJobs(self._transport)
        self.batches = AsyncBatches(self._transport)
        self.webhook_endpoints = AsyncWebhookEndpoints(self._transport)
        self.webhooks = AsyncWebhooks(self._transport, secret)

    async def usage(
        self, *, date_from: str | None = None, date_to: str | None = None, group_by: str = "day"
    ) -> Usage:
        """`GET /v1/usage`: jobs, images and cost per day, model or provider."""
        response = await self._transport.send(_usage_request(date_from, date_to, group_by))
        return Usage.model_validate(response.json())

    async def close(self) -> None:
        """Close the connection pools."""
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


__all__ = [
    "API_KEY_ENV",
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequest",
    "Batch",
    "BudgetExceeded",
    "Client",
    "ClientError",
    "Conflict",
    "Delivery",
    "Event",
    "IdempotencyKeyReused",
    "InvalidSignature",
    "Job",
    "JobEvent",
    "JobFinished",
    "MissingKey",
    "NotFound",
    "Output",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "Unreachable",
    "Usage",
    "ValidationFailed",
    "WaitTimeout",
    "WebhookEndpoint",
]
