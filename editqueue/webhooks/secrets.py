"""Signing secrets: rotation with an overlap, and where and how a given delivery is signed.

A rotation keeps the old secret signing next to the new one (two `v1,` signatures in one
header, as the Standard Webhooks spec allows) for `EDITQUEUE_WEBHOOK_ROTATION_OVERLAP`
seconds, so receivers can switch secrets without dropping a single delivery. A second
rotation inside the overlap retires the oldest secret at once: at most two sign.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session

from editqueue.db import DriverStatement
from editqueue.models import Tenant, WebhookEndpoint
from editqueue.webhooks.signing import generate_secret, secrets_in_force


def rotate_endpoint_secret(endpoint: WebhookEndpoint, now: dt.datetime, *, overlap: float) -> str:
    """Give the endpoint a new secret; the old one keeps signing for `overlap` seconds."""
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = now + dt.timedelta(seconds=overlap)
    endpoint.secret = generate_secret()
    endpoint.updated_at = now
    return endpoint.secret


def rotate_tenant_secret(tenant: Tenant, now: dt.datetime, *, overlap: float) -> str:
    """Give the tenant a new default secret; the old one keeps signing for `overlap` seconds."""
    tenant.previous_webhook_secret = tenant.webhook_secret
    tenant.previous_webhook_secret_until = now + dt.timedelta(seconds=overlap)
    tenant.webhook_secret = generate_secret()
    return tenant.webhook_secret


def endpoint_secrets(endpoint: WebhookEndpoint, now: dt.datetime) -> list[str]:
    """The secrets that sign deliveries to this endpoint now."""
    return secrets_in_force(
        endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_until, now
    )


@dataclass(frozen=True)
class Destination:
    """Where a delivery goes now and the secrets that sign it."""

    url: str
    secrets: list[str]
    # The endpoint is in a run of failures (a success must clear it).
    failing: bool = False


class Routed(Protocol):
    """What routing reads of a delivery: a `Delivery` row, or the engine's claimed copy."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def job_id(self) -> str | None: ...
    @property
    def endpoint_id(self) -> str | None: ...
    @property
    def url(self) -> str: ...


_ENDPOINT_TARGET = DriverStatement(
    "SELECT url, disabled, failing_since, secret, previous_secret, previous_secret_until"
    " FROM webhook_endpoints WHERE id = :id"
)
# The job's URL and the tenant's secrets in one trip; the tenant row always exists while
# its deliveries do (they cascade with it), the job's may be gone.
_JOB_TARGET = DriverStatement(
    "SELECT j.webhook_url, t.webhook_secret, t.previous_webhook_secret,"
    " t.previous_webhook_secret_until"
    " FROM tenants t LEFT JOIN jobs j ON j.id = :job_id WHERE t.id = :tenant_id"
)


def delivery_destination(
    session: Session, delivery: Routed, now: dt.datetime
) -> Destination | None:
    """The endpoint's current URL and secrets, or the job's URL and the tenant's secrets.

    An endpoint delivery follows the endpoint's URL as it is now (a customer who fixed the
    URL wants pending and recovered deliveries to go there). None when the delivery has
    nowhere to go any more: its endpoint is disabled, or was deleted (a tenant event has
    no per-job URL to fall back on).
    """
    if delivery.endpoint_id:
        endpoint = _ENDPOINT_TARGET.execute(session, {"id": delivery.endpoint_id}).fetchone()
        if endpoint is None:
            return None
        url, disabled, failing_since, secret, previous, previous_until = endpoint
        if disabled:
            return None
        secrets = secrets_in_force(secret, previous, previous_until, now)
        return Destination(url, secrets, failing_since is not None)
    if delivery.job_id is None:
        return None
    params = {"job_id": delivery.job_id, "tenant_id": delivery.tenant_id}
    target = _JOB_TARGET.execute(session, params).fetchone()
    assert target is not None  # the tenant outlives its deliveries
    webhook_url, secret, previous, previous_until = target
    # Without an endpoint, only the job's own webhook_url is a target; any other URL
    # belonged to an endpoint since deleted (the foreign key cleared endpoint_id).
    if webhook_url != delivery.url:
        return None
    secrets = secrets_in_force(secret, previous, previous_until, now)
    return Destination(delivery.url, secrets)
