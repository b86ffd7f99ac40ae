"""Who is signed in, CSRF tokens on every state-changing request, and the response headers.

The session cookie (Flask's signed cookie) holds the tenant id, the key id, a session id
and the CSRF token, never the key; every request re-checks that the key has not been
revoked since, and that the session was not signed out (a copy of a signed-out cookie is
refused too: signing out records the session id in Redis until the cookie would expire).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
from flask import abort, current_app, g, redirect, request, session, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from api.rate_limit import redis_client_url
from api.state import db, services
from editqueue import logs
from editqueue.models import ApiKey

log = logging.getLogger(__name__)

# Pages anyone may open: the sign-in form, the one-time link, and the static files.
OPEN_ENDPOINTS = {"console.login", "console.signin_link", "console.static"}
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_ENDED_PREFIX = "editqueue:console:ended:"


@dataclass(frozen=True)
class Viewer:
    """The signed-in tenant and key of this request."""

    tenant_id: str
    key_id: str


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def sign_in(tenant_id: str, key_id: str) -> None:
    """Start a fresh session for this key (a new CSRF token too: no fixation)."""
    session.clear()
    session.permanent = True
    session["tenant_id"] = tenant_id
    session["key_id"] = key_id
    session["sid"] = secrets.token_urlsafe(16)
    session["csrf"] = secrets.token_urlsafe(32)


def console_redis() -> redis.Redis | None:
    """The app's Redis client for console state (one pool per app; None without Redis)."""
    if "console_redis" not in current_app.extensions:
        url = services().settings.redis_url
        current_app.extensions["console_redis"] = (
            redis.Redis.from_url(redis_client_url(url), socket_timeout=2, socket_connect_timeout=2)
            if url
            else None
        )
    return current_app.extensions["console_redis"]


def sign_out() -> None:
    """End the session: forget it here, and remember its id as ended for the cookie's life."""
    sid = session.get("sid")
    session.clear()
    client = console_redis()
    if not sid or client is None:
        return
    lifetime = int(current_app.permanent_session_lifetime.total_seconds())
    try:
        client.set(_ENDED_PREFIX + sid, "1", ex=lifetime)
    except redis.RedisError as exc:
        log.warning("console.signout.unrecorded", extra=logs.fields(error=str(exc)))


def _ended(sid: str) -> bool:
    client = console_redis()
    if client is None:
        return False
    try:
        return bool(client.exists(_ENDED_PREFIX + sid))
    except redis.RedisError:
        return False  # the broker is this Redis: with it down, nothing else works either


def _key_is_live(tenant_id: str, key_id: str) -> bool:
    found = db().scalar(
        select(ApiKey.id).where(
            ApiKey.id == key_id, ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None)
        )
    )
    return found is not None


def _check_csrf() -> None:
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(403, "the form is out of date (CSRF token missing or wrong); reload and retry")


def before_request() -> Response | None:
    """Check CSRF on writes, then require a signed-in, unrevoked key on every closed page."""
    if request.method not in SAFE_METHODS:
        _check_csrf()
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    tenant_id, key_id, sid = session.get("tenant_id"), session.get("key_id"), session.get("sid")
    if not (tenant_id and key_id and sid) or _ended(sid) or not _key_is_live(tenant_id, key_id):
        for name in ("tenant_id", "key_id", "sid"):
            session.pop(name, None)
        if request.headers.get("HX-Request"):
            return Response("signed out", status=401, headers={"HX-Redirect": url_for(".login")})
        return redirect(url_for("console.login", next=request.full_path))
    g.viewer = Viewer(tenant_id, key_id)
    return None


def viewer() -> Viewer:
    """The signed-in tenant of this request."""
    return g.viewer


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def image_sources() -> str:
    """img-src: ourselves, data: URLs, and where signed links point (public URL, S3)."""
    svc = services()
    origins = {"'self'", "data:"}
    for url in (svc.settings.public_url, _probe_link()):
        origin = _origin(url) if url else None
        if origin:
            origins.add(origin)
    return " ".join(sorted(origins))


def _probe_link() -> str | None:
    # The storage signs locally (no request), so one throwaway link shows its origin.
    try:
        return services().storage.signed_url("console/probe", 60).url
    except Exception:  # a store that cannot sign: its images simply will not show
        return None


def security_headers(response: Response) -> Response:
    """A strict CSP (no inline script or style), no framing, no caching of tenant pages."""
    img_src = current_app.config.get("CONSOLE_IMG_SRC")
    if img_src is None:
        img_src = current_app.config["CONSOLE_IMG_SRC"] = image_sources()
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; img-src {img_src}; script-src 'self'; style-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response
