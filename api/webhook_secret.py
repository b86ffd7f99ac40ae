"""`/v1/webhooks/secret`: the tenant's default signing secret (for per-job webhook URLs)."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, jsonify

from api.auth import current_tenant_id
from api.openapi import operation
from api.state import db, services
from editqueue.models import Tenant
from editqueue.schemas import WebhookSecret
from editqueue.webhooks.secrets import rotate_tenant_secret

bp = Blueprint("webhook_secret", __name__, url_prefix="/v1/webhooks/secret")


@bp.get("")
@operation("The default webhook signing secret", tags=["webhooks"], responses={200: WebhookSecret})
def get_secret() -> Response:
    """The `whsec_…` secret that signs deliveries to per-job webhook URLs."""
    tenant = db().get(Tenant, current_tenant_id())
    assert tenant is not None  # authenticated a moment ago; tenants are never deleted live
    return jsonify({"secret": tenant.webhook_secret})


@bp.post("/rotate")
@operation("Rotate the default webhook secret", tags=["webhooks"], responses={200: WebhookSecret})
def rotate() -> Response:
    """A new secret; the old one keeps signing too during the overlap (24 h by default)."""
    session = db()
    tenant = session.get(Tenant, current_tenant_id(), with_for_update=True)
    assert tenant is not None  # authenticated a moment ago; tenants are never deleted live
    overlap = services().settings.webhook_rotation_overlap
    secret = rotate_tenant_secret(tenant, dt.datetime.now(dt.UTC), overlap=overlap)
    session.commit()
    return jsonify({"secret": secret})
