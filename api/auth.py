"""Bearer API keys: every /v1 route but vendor callbacks and signed file links needs one."""

from __future__ import annotations

import time

from flask import g, request

from api.errors import ApiProblem
from api.state import db
from editqueue.tenants import KeyOwner, find_key_owner, key_digest

PUBLIC_ENDPOINTS = {"callbacks.receive", "files.download"}
# A key resolved in the last few seconds is not looked up again: every request needs its
# owner, and keys change (rate, revocation) rarely. The price: such a change takes up to
# this long to reach every API process.
OWNER_CACHE_SECONDS = 5.0
_MAX_CACHED = 10_000

# digest of the key → (its owner, when the entry expires); only live keys are kept.
_owners: dict[str, tuple[KeyOwner, float]] = {}


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, detail, code="unauthorized", headers={"WWW-Authenticate": "Bearer"})


def _owner(digest: str) -> KeyOwner | None:
    now = time.monotonic()
    cached = _owners.get(digest)
    if cached is not None and cached[1] > now:
        return cached[0]
    owner = find_key_owner(db(), digest)
    if owner is None:
        _owners.pop(digest, None)
        return None
    if len(_owners) >= _MAX_CACHED:
        _owners.clear()
    _owners[digest] = (owner, now + OWNER_CACHE_SECONDS)
    return owner


def require_key() -> None:
    """before_request: resolve the key's owner from the Authorization header or answer 401."""
    if not request.path.startswith("/v1/") or request.endpoint in PUBLIC_ENDPOINTS:
        return
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise _unauthorized("send your API key as 'Authorization: Bearer <key>'")
    digest = key_digest(key.strip())
    owner = _owner(digest) if digest else None
    if owner is None:
        raise _unauthorized("invalid API key")
    g.key_owner = owner


def current_key() -> KeyOwner | None:
    """The authenticated key of this request (None on public routes)."""
    return g.get("key_owner")


def current_tenant_id() -> str:
    """The id of the tenant this request speaks for."""
    return g.key_owner.tenant_id
