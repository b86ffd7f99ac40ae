"""Rows to the public JSON shapes (shared by the API and webhook payloads)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from editqueue.infra.storage import Storage
from editqueue.jobs.attempts import attempt_log
from editqueue.models import Job, JobEvent


def timestamp(value: dt.datetime | None) -> str | None:
    """RFC 3339 UTC with a `Z`, millisecond precision."""
    if value is None:
        return None
    # isoformat, not strftime: glibc's %Y writes year 1 as "1", not "0001".
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _input(item: dict[str, Any], storage: Storage, ttl: int) -> dict[str, Any]:
    url = item.get("url")
    if item.get("key"):
        url = storage.signed_url(item["key"], ttl).url
    return {
        "url": url,
        "sha256": item.get("sha256"),
        "content_type": item.get("content_type"),
        "width": item.get("width"),
        "height": item.get("height"),
        "bytes": item.get("bytes"),
    }


def _output(item: dict[str, Any], storage: Storage, ttl: int) -> dict[str, Any]:
    link = storage.signed_url(item["key"], ttl)
    return {
        "index": item["index"],
        "url": link.url,
        "expires_at": timestamp(link.expires_at),
        "content_type": item["content_type"],
        "width": item["width"],
        "height": item["height"],
        "bytes": item["bytes"],
        "sha256": item["sha256"],
    }


def public_usage(job: Job) -> dict[str, Any] | None:
    """The Job's `usage`: what the vendor reported, with `attempts` from the attempt log."""
    attempts = attempt_log(job)
    if not attempts:
        return job.usage
    return {**(job.usage if isinstance(job.usage, dict) else {}), "attempts": attempts}


def job_to_public(job: Job, storage: Storage, *, link_ttl: int) -> dict[str, Any]:
    """The Job object, with fresh signed links to the stored inputs and outputs."""
    return {
        "id": job.id,
        "object": "job",
        "status": job.status,
        "model": job.model,
        "provider": job.provider,
        "routing": job.routing,
        "prompt": job.prompt,
        "params": job.params,
        "inputs": [_input(i, storage, link_ttl) for i in job.inputs],
        "outputs": [_output(o, storage, link_ttl) for o in job.outputs],
        "error": job.error,
        "attempts": job.attempts,
        "batch_id": job.batch_id,
        "metadata": job.meta,
        "webhook_url": job.webhook_url,
        "webhook_events": job.webhook_events,
        "usage": public_usage(job),
        "created_at": timestamp(job.created_at),
        "started_at": timestamp(job.started_at),
        "completed_at": timestamp(job.completed_at),
        "deadline_at": timestamp(job.deadline_at),
    }


def event_to_public(event: JobEvent) -> dict[str, Any]:
    """A job event as `GET /v1/jobs/{id}/events` lists it."""
    return {"id": event.id, "type": event.type, "at": timestamp(event.at), "detail": event.detail}
