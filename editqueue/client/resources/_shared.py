"""Pieces every resource uses: idempotency keys, query building, download targets, SSE."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypedDict

from editqueue.client.errors import ClientError
from editqueue.client.models import Output

OUTPUT_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
# The server sends a keep-alive every 15 s (api/streaming.py): a quiet stream is a dead one.
STREAM_READ_TIMEOUT = 40.0


def idempotency_headers(key: str | None) -> dict[str, str]:
    """An Idempotency-Key header: the caller's, else a fresh one, so retries never duplicate."""
    return {"Idempotency-Key": key or f"sdk-{uuid.uuid4()}"}


def timestamp(value: str | dt.datetime | None) -> str | None:
    """A query time as RFC 3339 (naive datetimes are taken as UTC)."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class JobFilters(TypedDict, total=False):
    """Filters of `GET /v1/jobs`; `created_after` is inclusive, `created_before` exclusive."""

    status: str | Sequence[str] | None
    model: str | None
    provider: str | None
    batch_id: str | None
    metadata: Mapping[str, str] | None
    created_after: str | dt.datetime | None
    created_before: str | dt.datetime | None
    limit: int | None  # page size (1–200); pages are fetched as iteration reaches them


def list_params(
    *,
    status: str | Sequence[str] | None = None,
    model: str | None = None,
    provider: str | None = None,
    batch_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
    created_after: str | dt.datetime | None = None,
    created_before: str | dt.datetime | None = None,
    limit: int | None = None,
) -> list[tuple[str, str]]:
    """The query of `GET /v1/jobs` (`metadata[KEY]=VALUE` pairs, comma-joined statuses)."""
    if status is not None and not isinstance(status, str):
        status = ",".join(status)
    pairs = {
        "status": status,
        "model": model,
        "provider": provider,
        "batch_id": batch_id,
        "created_after": timestamp(created_after),
        "created_before": timestamp(created_before),
        "limit": str(limit) if limit else None,
    }
    params = [(name, value) for name, value in pairs.items() if value]
    params += [(f"metadata[{k}]", v) for k, v in (metadata or {}).items()]
    return params


def with_cursor(params: list[tuple[str, str]], cursor: str | None) -> list[tuple[str, str]]:
    """The same query for the page after `cursor`."""
    return [*params, ("cursor", cursor)] if cursor else params


def output_path(directory: Path, name: str, output: Output, several: bool) -> Path:
    """Where `download` puts one output: `DIR/<name>[_<index>].<ext>` (name: the job id)."""
    suffix = OUTPUT_SUFFIXES.get(output.content_type, ".bin")
    index = f"_{output.index}" if several else ""
    return directory / f"{name}{index}{suffix}"


def already_saved(target: Path, sha256: str) -> bool:
    """Whether `target` holds these exact bytes already (downloads are resumable)."""
    return target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256


def save(target: Path, data: bytes, sha256: str) -> None:
    """Write the bytes atomically after checking them against their digest."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ClientError(f"{target.name}: downloaded bytes fail their sha256")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.replace(target)


class StreamCursor:
    """The id of the last server-sent event read, so a reconnect resumes after it."""

    def __init__(self) -> None:
        self.last_id: str | None = None

    def feed(self, line: str) -> None:
        if line.startswith("id:"):
            self.last_id = line[3:].strip() or self.last_id

    def path(self, job_id: str) -> str:
        return f"/v1/jobs/{job_id}/events"

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": self.last_id} if self.last_id else {}
