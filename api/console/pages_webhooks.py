"""Webhook endpoints: create, edit, enable/disable, rotate and reveal secrets, the delivery
log, recovery and test events."""

from __future__ import annotations

import datetime as dt
from typing import Any, get_args

from flask import flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response

from api.console.blueprint import bp
from api.console.guard import viewer
from api.errors import ApiProblem, validation_errors
from api.params import parse_time
from api.state import db, services
from editqueue.infra import outbox
from editqueue.models import DELIVERY_STATES, WebhookEndpoint
from editqueue.schemas import EndpointEventType, WebhookEndpointCreate, WebhookEndpointUpdate
from editqueue.webhooks import endpoints
from editqueue.webhooks import log as webhook_log
from editqueue.webhooks import replay as webhook_replay
from editqueue.webhooks.probe import send_test_event
from editqueue.webhooks.secrets import rotate_endpoint_secret

EVENT_TYPES = get_args(EndpointEventType)
LOG_PAGE = 50


def _load(endpoint_id: str) -> WebhookEndpoint:
    return endpoints.get_endpoint(db(), viewer().tenant_id, endpoint_id)


def _form_body() -> dict[str, Any]:
    return {
        "url": request.form.get("url", "").strip(),
        "events": [e for e in request.form.getlist("events") if e],
        "description": request.form.get("description", "").strip() or None,
    }


def _say_invalid(exc: ValidationError) -> None:
    for error in validation_errors(exc)[:3]:
        flash(f"{error['field']}: {error['message']}", "error")


@bp.get("/webhooks")
def webhooks_page() -> str:
    """The tenant's endpoints and a form for a new one."""
    rows, _ = endpoints.list_endpoints(db(), viewer().tenant_id, limit=200, before_id=None)
    return render_template("console/webhooks.html", endpoints=rows, event_types=EVENT_TYPES)


@bp.post("/webhooks")
def webhook_create() -> Response:
    """Create an endpoint, as `POST /v1/webhook-endpoints`; its secret is shown once."""
    try:
        spec = WebhookEndpointCreate.model_validate(_form_body())
    except ValidationError as exc:
        _say_invalid(exc)
        return redirect(url_for("console.webhooks_page"))
    svc = services()
    session = db()
    endpoint = endpoints.create_endpoint(
        session,
        viewer().tenant_id,
        url=spec.url,
        events=spec.events,
        description=spec.description,
        allowed=svc.settings.allow_private_urls,
        max_endpoints=svc.settings.max_webhook_endpoints,
    )
    session.commit()
    flash("endpoint created", "ok")
    return redirect(url_for("console.webhook_page", endpoint_id=endpoint.id))


def _endpoint_page(endpoint: WebhookEndpoint, *, secret: str | None = None) -> str:
    states = [s for s in request.args.getlist("state") if s in DELIVERY_STATES]
    cursor = request.args.get("cursor")
    before = None
    if cursor:
        try:
            before = webhook_log.decode_cursor(cursor)
        except Exception:  # a cursor we did not issue: the newest page
            before = None
    log, next_cursor = webhook_log.endpoint_log(
        db(), endpoint.id, states=states, limit=LOG_PAGE, before_id=before
    )
    return render_template(
        "console/webhook.html",
        endpoint=endpoint,
        secret=secret,
        deliveries=log,
        next_cursor=next_cursor,
        states=DELIVERY_STATES,
        chosen=set(states),
        event_types=EVENT_TYPES,
        default_since=(dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
    )


@bp.get("/webhooks/<endpoint_id>")
def webhook_page(endpoint_id: str) -> str:
    """One endpoint: settings, secret on request, delivery log by state."""
    return _endpoint_page(_load(endpoint_id))


@bp.post("/webhooks/<endpoint_id>")
def webhook_update(endpoint_id: str) -> Response:
    """Change url, events, description, as `PATCH /v1/webhook-endpoints/{id}`."""
    endpoint = _load(endpoint_id)
    body = _form_body()
    try:
        changes = WebhookEndpointUpdate.model_validate(body).changes()
    except ValidationError as exc:
        _say_invalid(exc)
        return redirect(url_for("console.webhook_page", endpoint_id=endpoint_id))
    endpoints.update_endpoint(
        db(), endpoint, changes, allowed=services().settings.allow_private_urls
    )
    db().commit()
    flash("endpoint saved", "ok")
    return redirect(url_for("console.webhook_page", endpoint_id=endpoint_id))


@bp.post("/webhooks/<endpoint_id>/enabled")
def webhook_toggle(endpoint_id: str) -> Response:
    """Enable or disable (`PATCH … {"disabled": …}`)."""
    endpoint = _load(endpoint_id)
    disabled = request.form.get("disabled") == "true"
    changes = WebhookEndpointUpdate.model_validate({"disabled": disabled}).changes()
    endpoints.update_endpoint(
        db(), endpoint, changes, allowed=services().settings.allow_private_urls
    )
    db().commit()
    flash("endpoint disabled" if disabled else "endpoint enabled", "ok")
    return redirect(url_for("console.webhook_page", endpoint_id=endpoint_id))


@bp.post("/webhooks/<endpoint_id>/delete")
def webhook_delete(endpoint_id: str) -> Response:
    """Delete the endpoint; its delivery log stays."""
    endpoints.delete_endpoint(db(), _load(endpoint_id))
    db().commit()
    flash("endpoint deleted", "ok")
    return redirect(url_for("console.webhooks_page"))


@bp.post("/webhooks/<endpoint_id>/secret")
def webhook_reveal(endpoint_id: str) -> str:
    """Show the current secret (asked for, never on the page by default)."""
    endpoint = _load(endpoint_id)
    return _endpoint_page(endpoint, secret=endpoint.secret)


@bp.post("/webhooks/<endpoint_id>/rotate")
def webhook_rotate(endpoint_id: str) -> str:
    """Rotate the secret; the old one keeps signing during the overlap."""
    endpoint = _load(endpoint_id)
    secret = rotate_endpoint_secret(
        endpoint, dt.datetime.now(dt.UTC), overlap=services().settings.webhook_rotation_overlap
    )
    db().commit()
    flash("secret rotated; the previous one keeps signing during the overlap", "ok")
    return _endpoint_page(endpoint, secret=secret)


@bp.post("/webhooks/<endpoint_id>/recover")
def webhook_recover(endpoint_id: str) -> Response:
    """Re-send every failed delivery since a time, as `POST …/recover`."""
    endpoint = _load(endpoint_id)
    try:
        since = parse_time(request.form.get("since", ""), "since")
    except ApiProblem as exc:
        flash(exc.detail, "error")
        return redirect(url_for("console.webhook_page", endpoint_id=endpoint_id))
    session = db()
    ids = webhook_replay.request_recovery(session, endpoint, since, None)
    session.commit()
    outbox.publish_committed(session, services().publisher, ids)
    flash(f"recovery queued: failed deliveries since {since:%Y-%m-%d %H:%M} UTC", "ok")
    return redirect(url_for("console.webhook_page", endpoint_id=endpoint_id))


@bp.post("/webhooks/<endpoint_id>/test")
def webhook_test(endpoint_id: str) -> Response:
    """Send a `webhook.test` event to this endpoint only."""
    svc = services()
    session = db()
    event, ids = send_test_event(session, _load(endpoint_id), settings=svc.settings)
    session.commit()
    outbox.publish_committed(session, svc.publisher, ids)
    flash(f"test event {event.id} sent", "ok")
    return redirect(url_for("console.webhook_page", endpoint_id=endpoint_id))
