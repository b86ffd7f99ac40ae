"""Sign in with an API key (or a one-time link), sign out."""

from __future__ import annotations

import redis
from flask import redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api.console import guard
from api.console.blueprint import bp
from api.console.signin_token import TOKEN_TTL_SECONDS, read_signin_token
from api.state import db, services
from editqueue.tenants import find_key_owner, key_digest

_USED_PREFIX = "editqueue:console:signin-used:"


def _next_page() -> str:
    target = request.values.get("next", "")
    # Only our own pages: never an absolute or scheme-relative URL.
    if target.startswith("/console") and not target.startswith("//"):
        return target
    return url_for("console.jobs")


@bp.get("/")
def index() -> Response:
    """The console opens on the jobs page."""
    return redirect(url_for("console.jobs"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    """The sign-in form; a valid key starts a session scoped to its tenant."""
    if request.method == "GET":
        return render_template("console/login.html", next=_next_page())
    key = request.form.get("api_key", "").strip()
    digest = key_digest(key) if key else None
    owner = find_key_owner(db(), digest) if digest else None
    if owner is None:
        page = render_template("console/login.html", next=_next_page(), error="invalid API key")
        return page, 401
    guard.sign_in(owner.tenant_id, owner.key_id)
    return redirect(_next_page())


def _first_use(nonce: str) -> bool:
    client = guard.console_redis()
    if client is None:
        return False
    try:
        return bool(client.set(_USED_PREFIX + nonce, "1", nx=True, ex=TOKEN_TTL_SECONDS + 60))
    except redis.RedisError:
        return False  # cannot prove it is unused: refuse (the key form still works)


@bp.get("/signin/<token>")
def signin_link(token: str) -> Response | tuple[str, int]:
    """Exchange a one-time link (printed by `editqueue standalone`) for a session."""
    try:
        claim = read_signin_token(services().settings.signing_key, token)
    except ValueError as exc:
        return render_template("console/login.html", next="", error=str(exc)), 403
    owner = find_key_owner(db(), claim.key_digest)
    if owner is None or not _first_use(claim.nonce):
        error = "this sign-in link was already used or its key is revoked; sign in with the key"
        return render_template("console/login.html", next="", error=error), 403
    guard.sign_in(owner.tenant_id, owner.key_id)
    return redirect(url_for("console.jobs"))


@bp.post("/logout")
def logout() -> Response:
    """End the session."""
    guard.sign_out()
    return redirect(url_for("console.login"))
