"""Bearer API keys: every /v1 route but vendor callbacks, signed file links and the admin API
(its own operator key, api/admin.py) needs one."""

from __future__ import annotations

import time

from flask import current_app, g, request

from api.errors import ApiProblem
from api.state import db, services
from editqueue.infra import key_generation
from editqueue.tenants import KeyOwner, find_key_owner, key_digest

PUBLIC_ENDPOINTS = {"callbacks.receive", "files.download"}
# Paths that answer to the operator key instead (api/admin.py; 404 when it is off).
ADMIN_PREFIX = "/v1/admin"
# A key resolved in the last few seconds is not looked up again: every request needs its
# owner, and keys change (rate, revocation) rarely. A change still reaches every process at
# once: it bumps a Redis counter (editqueue/infra/key_generation.py) that every request
# reads, and an entry cached under another value of it is not used.
OWNER_CACHE_SECONDS = 5.0
_MAX_CACHED = 10_000

# digest of the key → (its owner, when the entry expires, the generation it was read under);
# only live keys are kept.
_owners: dict[str, tuple[KeyOwner, float, bytes]] = {}
GENERATION_EXTENSION = "editqueue_key_generation"
# Installed by api/rate_limit.py: (owner) → the generation, read in the same round trip that
# counts the request against the owner's limit; None when it could not.
COUNTING_GENERATION_READER = "editqueue_counting_generation_reader"


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, detail, code="unauthorized", headers={"WWW-Authenticate": "Bearer"})


def _generation() -> bytes | None:
    reader = current_app.extensions.get(GENERATION_EXTENSION)
    if reader is None:  # one per app (and so per process), made on its first request
        reader = key_generation.GenerationReader(
            key_generation.connect(services().settings.redis_url)
        )
        current_app.extensions[GENERATION_EXTENSION] = reader
    return reader.current()


def _owner(digest: str) -> KeyOwner | None:
    now = time.monotonic()
    cached = _owners.get(digest)
    generation = None
    if cached is not None and cached[1] > now:
        counting_reader = current_app.extensions.get(COUNTING_GENERATION_READER)
        if counting_reader is not None:
            generation = counting_reader(cached[0])
    if generation is None:
        generation = _generation()
    if cached is not None and cached[1] > now and cached[2] == generation:
        return cached[0]
    owner = find_key_owner(db(), digest)
    if owner is None or generation is None:
        # Unknown generation (Redis down): trust only the database, every request.
        _owners.pop(digest, None)
        return owner
    if len(_owners) >= _MAX_CACHED:
        _owners.clear()
    _owners[digest] = (owner, now + OWNER_CACHE_SECONDS, generation)
    return owner


def require_key() -> None:
    """before_request: resolve the key's owner from the Authorization header or answer 401."""
    if not request.path.startswith("/v1/") or request.endpoint in PUBLIC_ENDPOINTS:
        return
    if request.path == ADMIN_PREFIX or request.path.startswith(ADMIN_PREFIX + "/"):
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
