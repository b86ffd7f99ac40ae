"""Mount the console on the API app: session cookie settings, hooks, page modules."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from flask import Flask, Request, flash, redirect, render_template, request, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.wrappers import Response

from api.console import (
    filters,
    guard,
    pages_auth,
    pages_batches,
    pages_jobs,
    pages_usage,
    pages_vendors,
    pages_webhooks,
)
from api.console.blueprint import bp
from editqueue.config import Settings
from editqueue.errors import EditqueueError, NotFound

_PAGES = (pages_auth, pages_jobs, pages_batches, pages_webhooks, pages_vendors, pages_usage)


def session_key(settings: Settings) -> bytes:
    """The cookie-signing key, derived from EDITQUEUE_SECRET_KEY (the same in every worker)."""
    return hmac.new(settings.signing_key, b"editqueue-console-session", hashlib.sha256).digest()


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """The signed cookie session, opened only under /console, where its cookie is scoped:
    building the signer on every API request cost 3 % of a `POST /v1/jobs`."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """The console's session; elsewhere the null session (nothing read or saved)."""
        if request.path == "/console" or request.path.startswith("/console/"):
            return super().open_session(app, request)
        return self.make_null_session(app)


def register(app: Flask, settings: Settings) -> None:
    """Serve the console at /console on `app`."""
    assert _PAGES  # the page modules register their routes on import
    app.secret_key = session_key(settings)
    app.session_interface = ConsoleSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="editqueue_console",
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
    )
    app.jinja_env.autoescape = True
    filters.install(app)
    app.register_blueprint(bp)


@bp.before_request
def _guard() -> Response | None:
    return guard.before_request()


@bp.after_request
def _headers(response: Response) -> Response:
    return guard.security_headers(response)


@bp.context_processor
def _template_globals() -> dict[str, object]:
    return {"csrf_token": guard.csrf_token}


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> tuple[str, int]:
    return render_template("console/not_found.html", detail=exc.detail), 404


@bp.errorhandler(EditqueueError)
def _refused(exc: EditqueueError) -> Response:
    # An action the domain refused (a finished job, a disabled endpoint): say why, go back.
    flash(exc.detail, "error")
    back = request.referrer or ""
    if not back.startswith(request.host_url + "console"):
        back = url_for("console.jobs")
    return redirect(back)
