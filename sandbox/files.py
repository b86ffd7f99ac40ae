"""Result files served by the sandbox itself, behind links that are signed and expire.

Links look like the vendors' object-storage links: `/<vendor>/files/<id>.<ext>` with
`expires` (Unix seconds) and `sig` (HMAC of the path and expiry under a key made at start).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
import secrets
import threading
import time

from flask import Blueprint, Response, current_app, request

from sandbox.state import sandbox_of

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}

blueprint = Blueprint("files", __name__)


@dataclasses.dataclass(frozen=True)
class StoredFile:
    """One file's bytes and when its links stop working."""

    data: bytes
    content_type: str
    expires_at: float


class FileStore:
    """In-memory files with expiring signed links; expired files are dropped on write."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}

    def put(self, vendor: str, data: bytes, content_type: str, ttl: float, base_url: str) -> str:
        """Store `data` and return its signed link, valid for `ttl` seconds."""
        now = time.time()
        # Rounded up, so a link is never shorter-lived than asked.
        expires = math.ceil(now + ttl)
        name = f"{secrets.token_hex(12)}.{EXTENSIONS[content_type]}"
        path = f"/{vendor}/files/{name}"
        with self._lock:
            self._files = {p: f for p, f in self._files.items() if f.expires_at >= now}
            self._files[path] = StoredFile(data, content_type, expires)
        return f"{base_url}{path}?expires={expires}&sig={self._sign(path, expires)}"

    def get(self, path: str, expires: str, sig: str) -> StoredFile | None:
        """The file behind a link, or None if the link is forged, expired or unknown."""
        if not expires.isdigit() or not hmac.compare_digest(sig, self._sign(path, int(expires))):
            return None
        if int(expires) < time.time():
            return None
        with self._lock:
            return self._files.get(path)

    def _sign(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


@blueprint.get("/<vendor>/files/<name>")
def download(vendor: str, name: str) -> Response:
    """Serve a stored file, or answer like object storage does when the link is bad."""
    store = sandbox_of(current_app).files
    stored = store.get(request.path, request.args.get("expires", ""), request.args.get("sig", ""))
    if stored is None:
        return _access_denied()
    return Response(stored.data, content_type=stored.content_type)


def _access_denied() -> Response:
    """The storage-style refusal the vendors' CDNs give for expired or tampered links."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error><Code>AccessDenied</Code>"
        "<Message>Request has expired or the signature does not match</Message></Error>"
    )
    return Response(body, status=403, content_type="application/xml")
