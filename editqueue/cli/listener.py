"""A local receiver for development: shows each delivery, checks its signature, forwards it.

Used by `editqueue webhooks listen`. It answers the sender with what the forward target
answered (so retries behave as they will in production), 502 if the target cannot be
reached, and otherwise 204 — or 400 when a secret was given and the signature fails.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from editqueue.webhooks.signing import verify

FORWARD_TIMEOUT = 15.0
# Headers that make up a Standard Webhooks delivery; the forward carries them unchanged.
FORWARDED_HEADERS = ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature")
MAX_BODY = 16 * 1024 * 1024


@dataclass(frozen=True)
class Seen:
    """One delivery as the listener saw it."""

    event_type: str
    webhook_id: str
    subject: str  # "job=job_… status=succeeded", "batch=bat_…", …
    signature: str  # "verified", "INVALID" or "not checked"
    forwarded: str  # "→ 200", "→ failed: …" or ""

    def line(self) -> str:
        """The line printed for this delivery."""
        now = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
        parts = [now, self.event_type, self.webhook_id, self.subject]
        parts += [f"signature {self.signature}", self.forwarded]
        return "  ".join(p for p in parts if p)


def describe_subject(payload: Any) -> str:
    """What the event is about, from its `data` object."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return ""
    kind = data.get("object", "object")
    if kind == "job":
        return f"job={data.get('id')} status={data.get('status')}"
    if kind == "batch":
        counts = data.get("counts") or {}
        return f"batch={data.get('id')} succeeded={counts.get('succeeded')}/{counts.get('total')}"
    return f"{kind}={data.get('id')}"


class Listener:
    """The receiving logic, independent of the HTTP server that feeds it."""

    def __init__(
        self,
        *,
        secret: str | None,
        forward_to: str | None,
        echo: Callable[[str], None],
        client: httpx.Client | None = None,
    ) -> None:
        self.secret = secret
        self.forward_to = forward_to
        self.echo = echo
        self.client = client or httpx.Client(timeout=FORWARD_TIMEOUT, follow_redirects=False)

    def receive(self, headers: dict[str, str], body: bytes) -> int:
        """Handle one delivery; returns the status to answer the sender with."""
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if self.secret is None:
            signature = "not checked (no --secret)"
        else:
            signature = "verified" if verify(self.secret, lowered, body) else "INVALID"
        status = 400 if signature == "INVALID" else 204
        forwarded = ""
        if self.forward_to:
            status, forwarded = self._forward(lowered, body)
        event_type = payload.get("type", "?") if isinstance(payload, dict) else "(not JSON)"
        self.echo(
            Seen(
                event_type=str(event_type),
                webhook_id=lowered.get("webhook-id", "(no webhook-id)"),
                subject=describe_subject(payload),
                signature=signature,
                forwarded=forwarded,
            ).line()
        )
        return status

    def _forward(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        assert self.forward_to is not None
        try:
            response = self.client.post(
                self.forward_to,
                content=body,
                headers={k: headers[k] for k in FORWARDED_HEADERS if k in headers},
            )
        except httpx.HTTPError as exc:
            return 502, f"→ forward failed: {type(exc).__name__}"
        return response.status_code, f"→ {response.status_code}"


def make_server(listener: Listener, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server that hands every POST to `listener`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if not 0 <= length <= MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            status = listener.receive(dict(self.headers), self.rfile.read(length))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass  # the listener prints its own line per delivery

    return ThreadingHTTPServer((host, port), Handler)
