"""Tenants and API keys. Keys are shown once and stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from editqueue.errors import Conflict, NotFound
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
    """Whom a live API key speaks for, and the key's own request rate (None: the default)."""

    tenant_id: str
    key_id: str
    rate_limit: int | None


def find_key_owner(session: Session, digest: str) -> KeyOwner | None:
    """The owner of the live key stored under `digest` (one indexed lookup), or None."""
    row = session.execute(
        select(ApiKey.tenant_id, ApiKey.id, ApiKey.rate_limit).where(
            ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
        )
    ).one_or_none()
    return None if row is None else KeyOwner(row.tenant_id, row.id, row.rate_limit)


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
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiKey(id=new_id("key"), tenant_id=tenant.id, prefix=key[:10], key_hash=_digest(key))
    )
    session.flush()
    return key


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
