"""`client.webhook_endpoints`: the tenant's endpoints, their secrets and delivery logs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from editqueue.client._transport import AsyncTransport, Request, SyncTransport
from editqueue.client.models import Delivery, WebhookEndpoint
from editqueue.client.resources._pages import apaginate, paginate

PATH = "/v1/webhook-endpoints"


def create_request(url: str, events: Sequence[str] | None, description: str | None) -> Request:
    body: dict[str, Any] = {"url": url, "events": list(events or [])}
    if description is not None:
        body["description"] = description
    return Request("POST", PATH, json=body)


def _page(limit: int | None) -> list[tuple[str, str]]:
    return [("limit", str(limit))] if limit else []


class WebhookEndpoints:
    """Webhook endpoints."""

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def _one(self, method: str, path: str, json: Any = None) -> WebhookEndpoint:
        return WebhookEndpoint.model_validate(self._t.send(Request(method, path, json=json)).json())

    def create(
        self, *, url: str, events: Sequence[str] | None = None, description: str | None = None
    ) -> WebhookEndpoint:
        """A new endpoint; its `secret` is in this answer (and rotate_secret's) only."""
        request = create_request(url, events, description)
        return WebhookEndpoint.model_validate(self._t.send(request).json())

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        return self._one("GET", f"{PATH}/{endpoint_id}")

    def list(self, *, limit: int | None = None) -> Iterator[WebhookEndpoint]:
        """Every endpoint, newest first, pages loaded lazily."""
        return paginate(self._t, PATH, _page(limit), WebhookEndpoint)

    def update(self, endpoint_id: str, **changes: Any) -> WebhookEndpoint:
        """Change `url`, `events`, `description` or `disabled` (False re-enables)."""
        return self._one("PATCH", f"{PATH}/{endpoint_id}", changes)

    def delete(self, endpoint_id: str) -> None:
        self._t.send(Request("DELETE", f"{PATH}/{endpoint_id}"))

    def rotate_secret(self, endpoint_id: str) -> WebhookEndpoint:
        """A new secret (the old one keeps signing during the overlap)."""
        return self._one("POST", f"{PATH}/{endpoint_id}/rotate-secret")

    def deliveries(self, endpoint_id: str) -> Iterator[Delivery]:
        """The endpoint's delivery log, newest first."""
        return paginate(self._t, f"{PATH}/{endpoint_id}/deliveries", [], Delivery)

    def recover(self, endpoint_id: str, since: str, until: str | None = None) -> dict[str, Any]:
        """Re-send every failed delivery since then (queued in the background)."""
        body = {"since": since, **({"until": until} if until else {})}
        result: dict[str, Any] = self._t.send(
            Request("POST", f"{PATH}/{endpoint_id}/recover", json=body)
        ).json()
        return result


class AsyncWebhookEndpoints:
    """Webhook endpoints (async)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def _one(self, method: str, path: str, json: Any = None) -> WebhookEndpoint:
        response = await self._t.send(Request(method, path, json=json))
        return WebhookEndpoint.model_validate(response.json())

    async def create(
        self, *, url: str, events: Sequence[str] | None = None, description: str | None = None
    ) -> WebhookEndpoint:
        """A new endpoint; its `secret` is in this answer (and rotate_secret's) only."""
        response = await self._t.send(create_request(url, events, description))
        return WebhookEndpoint.model_validate(response.json())

    async def get(self, endpoint_id: str) -> WebhookEndpoint:
        return await self._one("GET", f"{PATH}/{endpoint_id}")

    def list(self, *, limit: int | None = None) -> AsyncIterator[WebhookEndpoint]:
        """Every endpoint, newest first (`async for`)."""
        return apaginate(self._t, PATH, _page(limit), WebhookEndpoint)

    async def update(self, endpoint_id: str, **changes: Any) -> WebhookEndpoint:
        return await self._one("PATCH", f"{PATH}/{endpoint_id}", changes)

    async def delete(self, endpoint_id: str) -> None:
        await self._t.send(Request("DELETE", f"{PATH}/{endpoint_id}"))

    async def rotate_secret(self, endpoint_id: str) -> WebhookEndpoint:
        return await self._one("POST", f"{PATH}/{endpoint_id}/rotate-secret")

    def deliveries(self, endpoint_id: str) -> AsyncIterator[Delivery]:
        return apaginate(self._t, f"{PATH}/{endpoint_id}/deliveries", [], Delivery)

    async def recover(
        self, endpoint_id: str, since: str, until: str | None = None
    ) -> dict[str, Any]:
        body = {"since": since, **({"until": until} if until else {})}
        response = await self._t.send(Request("POST", f"{PATH}/{endpoint_id}/recover", json=body))
        result: dict[str, Any] = response.json()
        return result
