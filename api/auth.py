"""Bearer API keys: every /v1 route but vendor callbacks and signed file links needs one."""

from __future__ import annotations

from flask import g, request

from api.errors import ApiProblem
from api.state import db
from editqueue.models import Tenant
from editqueue.tenants import authenticate

PUBLIC_ENDPOINTS = {"callbacks.receive", "files.download"}


def require_key() -> None:
    """before_request: resolve the tenant from the Authorization header or answer 401."""
    if not request.path.startswith("/v1/") or request.endpoint in PUBLIC_ENDPOINTS:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiProblem(
            401,
            "send your API key as 'Authorization: Bearer <key>'",
            code="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tenant = authenticate(db(), key.strip())
    if tenant is None:
        raise ApiProblem(
            401, "invalid API key", code="unauthorized", headers={"WWW-Authenticate": "Bearer"}
        )
    g.tenant = tenant


def current_tenant() -> Tenant:
    """The authenticated tenant of this request."""
    return g.tenant
