"""Opaque, time-sortable identifiers with a type prefix (`job_…`, `evt_…`)."""

from __future__ import annotations

import secrets

from ulid import ULID


def new_id(prefix: str) -> str:
    """A new id such as `job_01JD3…`: a ULID, so ids sort by creation time."""
    return f"{prefix}_{ULID()}"


def new_token(nbytes: int = 24) -> str:
    """An unguessable URL-safe token."""
    return secrets.token_urlsafe(nbytes)
