"""`/v1/admin/…`: the operator's controls over tenants and their API keys.

Registered only when `EDITQUEUE_ADMIN_KEY` is set; otherwise every /v1/admin path is a
plain 404, so the API does not reveal that an operator surface exists. Requests carry the
operator key (`Authorization: Bearer <admin key>`), compared in constant time; tenant keys
never open these routes (api/auth.py leaves /v1/admin to this module).

Every change to a key or a tenant's rate or budget bumps the key generation counter after the
commit (editqueue/infra/key_generation.py), so a revoked key fails and a new budget applies at
once on every API process.
"""

from __future__ import annotations

import datetime as dt
import hmac
from decimal import Decimal
from typing import Annotated, Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from api.bodies import json_object
from api.errors import ApiProblem
from api.openapi import operation
from api.state import db, services
from editqueue import tenants
from editqueue.infra import key_generation
from editqueue.serialize import timestamp

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")
TAGS = ["admin"]
SCHEME = "adminKey"

RateLimit = Annotated[
    int | None,
    Field(
        ge=0,
        le=1_000_000,
        description="Requests per second per key (bursts of twice that); 0 = unlimited, "
        "null = the deployment default (EDITQUEUE_RATE_LIMIT).",
    ),
]
MaxRunning = Annotated[
    int | None,
    Field(
        ge=1,
        le=1_000_000,
        description="Jobs running at once; null = the deployment default "
        "(EDITQUEUE_TENANT_MAX_RUNNING).",
    ),
]


MonthlyBudget = Annotated[
    Decimal | None,
    Field(
        ge=0,
        max_digits=18,
        decimal_places=6,
        description="Spend allowed per calendar month (UTC), in EDITQUEUE_CURRENCY, as a "
        "decimal string or number; null = no budget. A job whose estimate would take the "
        "month past it is refused (402 budget_exceeded).",
        examples=["250.00"],
    ),
]
AlertRatio = Annotated[
    Decimal | None,
    Field(
        gt=0,
        le=1,
        decimal_places=4,
        description="Share of the budget at which `tenant.budget_threshold` fires (once a "
        "month); null = 0.8.",
        examples=["0.8"],
    ),
]
RetentionDays = Annotated[
    int | None,
    Field(
        ge=1,
        le=36_500,
        description="Days the tenant's ended jobs are kept; null = the deployment default "
        "(EDITQUEUE_RETENTION_DAYS).",
    ),
]


def _operation(summary: str, **kwargs: Any) -> Any:
    """`operation` for the admin routes: their tag and the operator key's scheme."""
    return operation(summary, tags=TAGS, security_scheme=SCHEME, **kwargs)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdminTenant(BaseModel):
    """A tenant as operators see it (never its webhook secret)."""

    id: str
    name: str
    max_running_jobs: int | None
    rate_limit: int | None
    monthly_budget: str | None = Field(description="Decimal string; null = no budget")
    budget_alert_ratio: str | None = Field(description="Decimal string; null = 0.8")
    retention_days: int | None
    created_at: str


class AdminTenantList(BaseModel):
    """Every tenant, by name."""

    data: list[AdminTenant]


class AdminTenantCreate(_Strict):
    """Body of `POST /v1/admin/tenants`."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    max_running_jobs: MaxRunning = None
    rate_limit: RateLimit = None
    monthly_budget: MonthlyBudget = None
    budget_alert_ratio: AlertRatio = None
    retention_days: RetentionDays = None


class AdminTenantUpdate(_Strict):
    """Body of `PATCH /v1/admin/tenants/{id}`: only the fields sent change."""

    max_running_jobs: MaxRunning = None
    rate_limit: RateLimit = None
    monthly_budget: MonthlyBudget = None
    budget_alert_ratio: AlertRatio = None
    retention_days: RetentionDays = None


_TENANT_FIELDS = (
    "max_running_jobs",
    "rate_limit",
    "monthly_budget",
    "budget_alert_ratio",
    "retention_days",
)


class AdminApiKey(BaseModel):
    """An API key's record: never the key itself nor its digest."""

    id: str
    tenant_id: str
    prefix: str = Field(description="The key's first characters, to recognise it")
    rate_limit: int | None
    created_at: str
    revoked_at: str | None


class AdminApiKeyList(BaseModel):
    """A tenant's keys, live and revoked, oldest first."""

    data: list[AdminApiKey]


class AdminApiKeyCreate(_Strict):
    """Body of `POST /v1/admin/tenants/{id}/keys` (may be empty)."""

    rate_limit: RateLimit = None


class AdminApiKeyCreated(AdminApiKey):
    """A new key's record with the key itself, shown this once."""

    key: str = Field(description="The API key; only its SHA-256 is stored")


class AdminApiKeyRotated(BaseModel):
    """The replacement key (shown once) and the old key, revoked at once."""

    key: AdminApiKeyCreated
    revoked: AdminApiKey


# -- auth ------------------------------------------------------------------------------------


@bp.before_request
def require_admin_key() -> None:
    """Answer 401 unless the request carries the operator key."""
    configured = services().settings.admin_key
    expected = configured.get_secret_value().encode() if configured else b""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if (
        not expected
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(given.strip().encode(), expected)
    ):
        raise ApiProblem(
            401,
            "send the operator key as 'Authorization: Bearer <EDITQUEUE_ADMIN_KEY>'",
            code="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )


# -- helpers ---------------------------------------------------------------------------------


def _body(model: type[_Strict]) -> Any:
    body, _ = json_object(empty_is_object=True)
    return model.model_validate(body)  # a ValidationError becomes a 422 naming the field


def _tenant(row: Any) -> dict[str, Any]:
    out = tenants.tenant_to_public(row)
    out["created_at"] = timestamp(out["created_at"])
    return out


def _key(row: Any, plain: str | None = None) -> dict[str, Any]:
    out = tenants.api_key_to_public(row)
    out["created_at"] = timestamp(out["created_at"] or dt.datetime.now(dt.UTC))
    out["revoked_at"] = timestamp(out["revoked_at"])
    if plain is not None:
        out["key"] = plain
    return out


def _commit_key_change() -> None:
    """Commit, then tell every API process to forget cached keys."""
    db().commit()
    key_generation.bump(services().settings.redis_url)


def _created(body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.status_code = 201
    return response


# -- tenants ---------------------------------------------------------------------------------


@bp.get("/tenants")
@_operation(
    "List tenants",
    responses={200: AdminTenantList},
)
def list_tenants() -> Response:
    """Every tenant with its quotas."""
    return jsonify({"data": [_tenant(t) for t in tenants.list_tenants(db())]})


@bp.post("/tenants")
@_operation(
    "Create a tenant",
    body=AdminTenantCreate,
    responses={201: AdminTenant, 409: None, 422: None},
)
def create_tenant() -> Response:
    """A new tenant (no key yet: create one under /keys)."""
    spec: AdminTenantCreate = _body(AdminTenantCreate)
    session = db()
    row = tenants.create_tenant(session, spec.name)
    tenants.update_tenant(session, row, **{f: getattr(spec, f) for f in _TENANT_FIELDS})
    session.commit()
    return _created(_tenant(row))


@bp.get("/tenants/<tenant_id>")
@_operation(
    "Show a tenant",
    responses={200: AdminTenant, 404: None},
)
def show_tenant(tenant_id: str) -> Response:
    """One tenant with its quotas."""
    return jsonify(_tenant(tenants.get_tenant(db(), tenant_id)))


@bp.patch("/tenants/<tenant_id>")
@_operation(
    "Change a tenant's quotas and budget",
    body=AdminTenantUpdate,
    responses={200: AdminTenant, 404: None, 422: None},
)
def update_tenant(tenant_id: str) -> Response:
    """Fields sent change (null restores the default); a new rate or budget applies at once."""
    spec: AdminTenantUpdate = _body(AdminTenantUpdate)
    sent = spec.model_fields_set
    session = db()
    row = tenants.get_tenant(session, tenant_id, for_update=True)
    changes = {f: getattr(spec, f) for f in _TENANT_FIELDS if f in sent}
    tenants.update_tenant(session, row, **changes)
    _commit_key_change()
    return jsonify(_tenant(row))


# -- keys ------------------------------------------------------------------------------------


@bp.get("/tenants/<tenant_id>/keys")
@_operation(
    "List a tenant's API keys",
    responses={200: AdminApiKeyList, 404: None},
)
def list_keys(tenant_id: str) -> Response:
    """Ids, prefixes and dates: never a key or its digest."""
    session = db()
    rows = tenants.list_api_keys(session, tenants.get_tenant(session, tenant_id))
    return jsonify({"data": [_key(k) for k in rows]})


@bp.post("/tenants/<tenant_id>/keys")
@_operation(
    "Create an API key",
    body=AdminApiKeyCreate,
    responses={201: AdminApiKeyCreated, 404: None, 422: None},
)
def create_key(tenant_id: str) -> Response:
    """The key is in this answer only; only its SHA-256 is stored."""
    spec: AdminApiKeyCreate = _body(AdminApiKeyCreate)
    session = db()
    row, plain = tenants.issue_api_key(
        session, tenants.get_tenant(session, tenant_id), spec.rate_limit
    )
    session.commit()
    return _created(_key(row, plain))


@bp.post("/keys/<key_id>/revoke")
@_operation(
    "Revoke an API key",
    responses={200: AdminApiKey, 404: None},
)
def revoke_key(key_id: str) -> Response:
    """The key stops working at once on every API process; revoking twice is harmless."""
    row = tenants.revoke_api_key(db(), key_id)
    _commit_key_change()
    return jsonify(_key(row))


@bp.post("/keys/<key_id>/rotate")
@_operation(
    "Rotate an API key",
    responses={201: AdminApiKeyRotated, 404: None, 409: None},
)
def rotate_key(key_id: str) -> Response:
    """A new key with the same tenant and rate; the old one is revoked at once (no overlap)."""
    new, plain, old = tenants.rotate_api_key(db(), key_id)
    _commit_key_change()
    return _created({"key": _key(new, plain), "revoked": _key(old)})
