"""`client.webhooks`: verify deliveries (Standard Webhooks, by its library) and the secret."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Generic, TypeVar

import standardwebhooks

from editqueue.client._transport import AsyncTransport, Request, SyncTransport
from editqueue.client.errors import ClientError
from editqueue.client.models import Event

SECRET_ENV = "EDITQUEUE_WEBHOOK_SECRET"


class InvalidSignature(ClientError):
    """The delivery's signature or timestamp does not verify."""


def verify_with(secret: str, body: bytes | str, headers: Mapping[str, str]) -> Event:
    """The event, once its Standard Webhooks signature verified with `secret`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        standardwebhooks.Webhook(secret).verify(body, lowered, json_parse=False)
    except standardwebhooks.WebhookVerificationError as exc:
        raise InvalidSignature(f"webhook does not verify: {exc}") from None
    return Event.model_validate(json.loads(body))


T = TypeVar("T", SyncTransport, AsyncTransport)


class _WebhooksBase(Generic[T]):
    def __init__(self, transport: T, secret: str | None = None) -> None:
        self._t: T = transport
        self._secret = secret or os.environ.get(SECRET_ENV)


class Webhooks(_WebhooksBase[SyncTransport]):
    """Webhook signatures and the tenant's signing secret."""

    def verify(
        self, body: bytes | str, headers: Mapping[str, str], *, secret: str | None = None
    ) -> Event:
        """Check a delivery and parse it; `InvalidSignature` if it does not verify.

        The secret: `secret=` (an endpoint's), else the client's `webhook_secret` (or
        EDITQUEUE_WEBHOOK_SECRET), else the tenant's, fetched once from the API.
        """
        return verify_with(secret or self._secret or self.secret(), body, headers)

    def secret(self) -> str:
        """The tenant's default signing secret (signs per-job webhook_url deliveries)."""
        self._secret = str(self._t.send(Request("GET", "/v1/webhooks/secret")).json()["secret"])
        return self._secret

    def rotate_secret(self) -> str:
        """A new tenant secret (the old one keeps signing during the overlap)."""
        response = self._t.send(Request("POST", "/v1/webhooks/secret/rotate"))
        self._secret = str(response.json()["secret"])
        return self._secret


class AsyncWebhooks(_WebhooksBase[AsyncTransport]):
    """Webhook signatures and the tenant's signing secret (async).

    `verify` is synchronous (it does no I/O); without a secret known yet, `await
    client.webhooks.secret()` first, or pass `secret=`.
    """

    def verify(
        self, body: bytes | str, headers: Mapping[str, str], *, secret: str | None = None
    ) -> Event:
        """Check a delivery and parse it; `InvalidSignature` if it does not verify."""
        chosen = secret or self._secret
        if not chosen:
            raise ClientError("no webhook secret: pass secret=, or await webhooks.secret() first")
        return verify_with(chosen, body, headers)

    async def secret(self) -> str:
        """The tenant's default signing secret (kept for `verify`)."""
        response = await self._t.send(Request("GET", "/v1/webhooks/secret"))
        self._secret = str(response.json()["secret"])
        return self._secret

    async def rotate_secret(self) -> str:
        """A new tenant secret (the old one keeps signing during the overlap)."""
        response = await self._t.send(Request("POST", "/v1/webhooks/secret/rotate"))
        self._secret = str(response.json()["secret"])
        return self._secret
