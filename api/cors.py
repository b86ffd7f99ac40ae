"""CORS for browser clients on the origins in `EDITQUEUE_CORS_ORIGINS`.

A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin is
answered 204 here, before key auth: browsers never send credentials on a preflight.
Actual responses to an allowed origin carry `Access-Control-Allow-Origin` and expose the
headers clients act on. Any other origin gets no CORS headers, so the browser withholds
the response. `*` allows every origin; it is safe because keys travel in the
`Authorization` header, never in cookies, so no credentials are ever allowed.
"""

from __future__ import annotations

from flask import Flask, Response, request

ALLOWED_METHODS = "GET, POST, PATCH, PUT, DELETE, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, Prefer"
EXPOSED_HEADERS = (
    "Location, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy, "
    "Retry-After, Idempotent-Replayed, Preference-Applied"
)
MAX_AGE_SECONDS = "600"


class Cors:
    """The two hooks, for one set of allowed origins."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)

    def _allowed(self) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        if self.any_origin:
            return "*"
        return origin if origin in self.origins else None

    def preflight(self) -> Response | None:
        """before_request: answer an allowed origin's preflight without asking for a key."""
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        allowed = self._allowed()
        if allowed is None:
            return None  # Flask's own OPTIONS answer, without CORS headers: the browser stops
        response = Response(status=204)
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = MAX_AGE_SECONDS
        return response

    def decorate(self, response: Response) -> Response:
        """after_request: CORS headers for allowed origins; `Vary: Origin` on every answer."""
        response.vary.add("Origin")
        allowed = self._allowed()
        if allowed is not None:
            response.headers.setdefault("Access-Control-Allow-Origin", allowed)
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response


def init_app(app: Flask, origins: tuple[str, ...]) -> None:
    """Install the hooks (before key auth); no origins configured = no CORS at all."""
    if not origins:
        return
    cors = Cors(origins)
    app.before_request(cors.preflight)
    app.after_request(cors.decorate)
