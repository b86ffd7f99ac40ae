"""Tenants and API keys. Keys are shown once and stored only as a SHA-256 digest."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from editqueue.errors import Conflict, InvalidRequest, NotFound
from editqueue.ids import new_id
from editqueue.models import ApiKey, Tenant
from editqueue.webhooks.signing import generate_secret

KEY_PREFIX = "eq_"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_digest(key: str) -> str | None:
    """The digest an API key is stored under; None for anything that cannot be a key."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    return _digest(key)


@dataclass(frozen=True)
class KeyOwner:
    """Whom a live API key speaks for, the key's own request rate (None: the default), and
    the tenant's monthly budget (None: no budget) with its alert ratio (None: the default).

    Read with the key so a submission of a tenant without a budget costs no extra query;
    the API caches owners briefly (api/auth.py), and every operator change bumps the key
    generation, so a new budget applies at once (within 5 s if Redis is unreachable).
    """

    tenant_id: str
    key_id: str
    rate_limit: int | None
    monthly_budget: Decimal | None = None
    budget_alert_ratio: Decimal | None = None


def find_key_owner(session: Session, digest: str) -> KeyOwner | None:
    """The owner of the live key stored under `digest` (one indexed lookup), or None."""
    rate = func.coalesce(ApiKey.rate_limit, Tenant.rate_limit).label("rate")
    row = session.execute(
        select(ApiKey.tenant_id, ApiKey.id, rate, Tenant.monthly_budget, Tenant.budget_alert_ratio)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    ).one_or_none()
    if row is None:
        return None
    return KeyOwner(row.tenant_id, row.id, row.rate, row.monthly_budget, row.budget_alert_ratio)


def create_tenant(session: Session, name: str) -> Tenant:
    """A new tenant with its own default webhook signing secret."""
    name = name.strip()
    if not name or len(name) > 100:
        raise Conflict("tenant name must be 1–100 characters")
    tenant = Tenant(id=new_id("ten"), name=name, webhook_secret=generate_secret())
    session.add(tenant)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"a tenant named {name!r} already exists") from None
    return tenant


def get_tenant_by_name(session: Session, name: str) -> Tenant:
    """The tenant with this name, or NotFound."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotFound(f"no tenant named {name!r}")
    return tenant


def ensure_tenant(session: Session, name: str) -> Tenant:
    """The tenant with this name, created if missing."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    return tenant or create_tenant(session, name)


def create_api_key(session: Session, tenant: Tenant) -> str:
    """Issue a key for the tenant; the plain key is returned once and never stored."""
    return issue_api_key(session, tenant)[1]


def issue_api_key(
    session: Session, tenant: Tenant, rate_limit: int | None = None
) -> tuple[ApiKey, str]:
    """A new key row and the plain key (returned once; only its digest is stored)."""
    _check_rate_limit(rate_limit)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=new_id("key"),
        tenant_id=tenant.id,
        prefix=key[:10],
        key_hash=_digest(key),
        rate_limit=rate_limit,
    )
    session.add(row)
    session.flush()
    return row, key


def authenticate(session: Session, key: str) -> Tenant | None:
    """The tenant owning a live key, or None.

    Lookup is by digest through a unique index, so timing reveals nothing about stored
    keys: comparing digests of random keys leaks no usable prefix.
    """
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = session.execute(
        select(Tenant)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_hash == _digest(key), ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    return row


def rotate_webhook_secret(session: Session, tenant: Tenant) -> str:
    """Replace the tenant's default webhook secret; returns the new one."""
    tenant.webhook_secret = generate_secret()
    session.flush()
    return tenant.webhook_secret


# -- operator controls (the admin API and `editqueue tenants|keys`) --------------------------

# Sentinel for "leave this field as it is" in update_tenant (None means "the default").
UNCHANGED: Any = object()


def list_tenants(session: Session) -> list[Tenant]:
    """Every tenant, by name."""
    return list(session.scalars(select(Tenant).order_by(Tenant.name)))


def get_tenant(session: Session, tenant_id: str, *, for_update: bool = False) -> Tenant:
    """The tenant with this id, or NotFound."""
    tenant = session.get(Tenant, tenant_id, with_for_update=for_update)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    return tenant


def _check_rate_limit(value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or value < 0 or value > 1_000_000):
        raise InvalidRequest("rate_limit must be 0 (unlimited) to 1000000 requests per second")


# NUMERIC(18,6): at most 12 digits before the point.
MAX_BUDGET = Decimal("999999999999.999999")


def _decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise InvalidRequest(f"{field} must be a decimal number such as 250.00")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRequest(f"{field} {value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise InvalidRequest(f"{field} must be a finite number")
    return amount


def check_budget(value: Any) -> Decimal | None:
    """A monthly budget (decimal ≥ 0, 6 places at most) or None (no budget); 422 otherwise."""
    if value is None:
        return None
    amount = _decimal(value, "monthly_budget")
    if amount < 0 or amount > MAX_BUDGET:
        raise InvalidRequest("monthly_budget must be 0 to 999999999999.999999 (or null: none)")
    if amount != amount.quantize(Decimal("0.000001")):
        raise InvalidRequest("monthly_budget may have at most 6 decimal places")
    return amount


def check_alert_ratio(value: Any) -> Decimal | None:
    """A budget alert ratio in (0, 1], 4 places at most, or None (the default 0.8); 422."""
    if value is None:
        return None
    ratio = _decimal(value, "budget_alert_ratio")
    if not 0 < ratio <= 1:
        raise InvalidRequest("budget_alert_ratio must be above 0 and at most 1 (e.g. 0.8)")
    if ratio != ratio.quantize(Decimal("0.0001")):
        raise InvalidRequest("budget_alert_ratio may have at most 4 decimal places")
    return ratio


def check_retention_days(value: Any) -> int | None:
    """Days a tenant's jobs are kept (1–36500) or None (the deployment default); 422."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 36_500:
        raise InvalidRequest("retention_days must be 1 to 36500 (or null: the default)")
    return value


def update_tenant(
    session: Session,
    tenant: Tenant,
    *,
    max_running_jobs: int | None = UNCHANGED,
    rate_limit: int | None = UNCHANGED,
    monthly_budget: Decimal | str | None = UNCHANGED,
    budget_alert_ratio: Decimal | str | None = UNCHANGED,
    retention_days: int | None = UNCHANGED,
) -> Tenant:
    """Change the tenant's quotas; None restores the deployment default of a field (for
    monthly_budget: no budget)."""
    if max_running_jobs is not UNCHANGED:
        if max_running_jobs is not None and not 1 <= max_running_jobs <= 1_000_000:
            raise InvalidRequest("max_running_jobs must be 1 to 1000000")
        tenant.max_running_jobs = max_running_jobs
    if rate_limit is not UNCHANGED:
        _check_rate_limit(rate_limit)
        tenant.rate_limit = rate_limit
    if monthly_budget is not UNCHANGED:
        tenant.monthly_budget = check_budget(monthly_budget)
    if budget_alert_ratio is not UNCHANGED:
        tenant.budget_alert_ratio = check_alert_ratio(budget_alert_ratio)
    if retention_days is not UNCHANGED:
        tenant.retention_days = check_retention_days(retention_days)
    session.flush()
    return tenant


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(Decimal("0.000001")))


def tenant_to_public(tenant: Tenant) -> dict[str, Any]:
    """What operators see of a tenant (never its webhook secret); amounts as decimal strings."""
    ratio = tenant.budget_alert_ratio
    return {
        "id": tenant.id,
        "name": tenant.name,
        "max_running_jobs": tenant.max_running_jobs,
        "rate_limit": tenant.rate_limit,
        "monthly_budget": _amount(tenant.monthly_budget),
        "budget_alert_ratio": None if ratio is None else str(ratio.normalize()),
        "retention_days": tenant.retention_days,
        "created_at": tenant.created_at,
    }


def list_api_keys(session: Session, tenant: Tenant) -> list[ApiKey]:
    """The tenant's keys, live and revoked, oldest first."""
    return list(
        session.scalars(
            select(ApiKey)
            .where(ApiKey.tenant_id == tenant.id)
            .order_by(ApiKey.created_at, ApiKey.id)
        )
    )


def get_api_key(session: Session, key_id: str) -> ApiKey:
    """The key row with this id (locked for the change that follows), or NotFound."""
    row = session.get(ApiKey, key_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no API key {key_id!r}")
    return row


def revoke_api_key(session: Session, key_id: str) -> ApiKey:
    """Revoke a key now; revoking it again keeps the first revocation time."""
    row = get_api_key(session, key_id)
    if row.revoked_at is None:
        row.revoked_at = dt.datetime.now(dt.UTC)
        session.flush()
    return row


def rotate_api_key(session: Session, key_id: str) -> tuple[ApiKey, str, ApiKey]:
    """A new key for the same tenant and rate, and the old one revoked at once (no overlap).

    Returns (new row, new plain key, old row). A revoked key cannot be rotated: its
    replacement would bring back access someone chose to end.
    """
    old = get_api_key(session, key_id)
    if old.revoked_at is not None:
        raise Conflict(f"API key {key_id!r} is revoked; create a new key instead")
    tenant = get_tenant(session, old.tenant_id)
    new, key = issue_api_key(session, tenant, old.rate_limit)
    old.revoked_at = dt.datetime.now(dt.UTC)
    session.flush()
    return new, key, old


def api_key_to_public(row: ApiKey) -> dict[str, Any]:
    """What operators see of a key: never the key or its digest."""
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "prefix": row.prefix,
        "rate_limit": row.rate_limit,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }
