"""Long-lived reads: `Prefer: wait=N` on job creation and the SSE form of a job's events.

The API runs on gevent workers (editqueue/standalone/processes.py): a held request is a greenlet
sleeping between polls of the database, not a pinned OS thread, and it holds no database
connection while it sleeps, so hundreds of open streams cost a few KB each and a short
query every half second. Events are read from the job_events table (the source of truth),
so a stream never misses an event whatever process wrote it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator

from flask import Response
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ApiProblem
from editqueue import logs
from editqueue.models import TERMINAL_STATUSES, Job, JobEvent
from editqueue.serialize import event_to_public

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 60
POLL_SECONDS = 0.5
FIRST_POLL_SECONDS = 0.1
# A comment line this often keeps proxies from closing an idle stream and notices clients
# that went away.
HEARTBEAT_SECONDS = 15.0
# A stream is closed after this long; EventSource clients reconnect with Last-Event-ID.
MAX_STREAM_SECONDS = 3600.0
RECONNECT_MS = 2000

_WAIT = re.compile(r"^wait\s*=\s*\"?(\S*?)\"?$", re.IGNORECASE)
_EVENT_ID = re.compile(r"evt_[0-9A-HJKMNP-TV-Z]{26}")


# -- Prefer: wait ----------------------------------------------------------------------------


def parse_prefer_wait(header: str | None) -> int | None:
    """Seconds asked for by `Prefer: wait=N` (1–60), None without one; 422 when malformed."""
    if not header:
        return None
    for preference in header.split(","):
        token = preference.split(";", 1)[0].strip()
        match = _WAIT.match(token)
        if match is None:
            continue  # other preferences are not ours to judge (RFC 7240)
        value = match.group(1)
        if not value.isdigit() or not 1 <= int(value) <= MAX_WAIT_SECONDS:
            raise ApiProblem(
                422,
                f"Prefer: wait must be a whole number of seconds from 1 to {MAX_WAIT_SECONDS}",
                errors=[{"field": "Prefer", "message": f"wait=1…{MAX_WAIT_SECONDS}"}],
            )
        return int(value)
    return None


def _load_job(sessions: sessionmaker[Session], job_id: str) -> Job:
    with sessions() as session:
        return session.scalars(select(Job).where(Job.id == job_id)).one()


def wait_for_job(sessions: sessionmaker[Session], job_id: str, seconds: float) -> Job:
    """The job once it is terminal, or as it is when `seconds` have passed."""
    deadline = time.monotonic() + seconds
    interval = FIRST_POLL_SECONDS
    while True:
        job = _load_job(sessions, job_id)
        left = deadline - time.monotonic()
        if job.status in TERMINAL_STATUSES or left <= 0:
            return job
        time.sleep(min(interval, left))
        interval = min(interval * 1.5, POLL_SECONDS)


# -- server-sent events ----------------------------------------------------------------------


def parse_last_event_id(value: str | None) -> str | None:
    """The `Last-Event-ID` a reconnecting client sends; 422 for something we never sent."""
    if not value:
        return None
    if not _EVENT_ID.fullmatch(value.strip()):
        raise ApiProblem(
            422,
            "Last-Event-ID is not an event id of this API",
            errors=[{"field": "Last-Event-ID", "message": "expected an evt_… id"}],
        )
    return value.strip()


def format_event(event: JobEvent) -> str:
    """One event in the text/event-stream format (its id lets clients resume)."""
    data = json.dumps(event_to_public(event), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"


def _poll(
    sessions: sessionmaker[Session], job_id: str, after_id: str | None
) -> tuple[list[str], str | None, bool]:
    """New events as SSE chunks, the last id sent, and whether the job has ended."""
    with sessions() as session:
        # Status first: a terminal status is committed with its terminal event, so the
        # events query after it is sure to see that event.
        status = session.scalar(select(Job.status).where(Job.id == job_id))
        query = select(JobEvent).where(JobEvent.job_id == job_id)
        if after_id:
            query = query.where(JobEvent.id > after_id)
        events = list(session.scalars(query.order_by(JobEvent.id)))
        # The terminal event closes the stream: later ones (a worker's late notes) stay out.
        cut = next((i + 1 for i, e in enumerate(events) if e.terminal), len(events))
        events = events[:cut]
        chunks = [format_event(e) for e in events]
    ended = status in TERMINAL_STATUSES or any(e.terminal for e in events)
    return chunks, (events[-1].id if events else after_id), ended


def event_stream(
    sessions: sessionmaker[Session], job_id: str, after_id: str | None
) -> Iterator[str]:
    """Replay the job's events after `after_id`, then follow new ones until the terminal one."""
    yield f"retry: {RECONNECT_MS}\n\n"
    started = last_write = time.monotonic()
    while True:
        try:
            chunks, after_id, ended = _poll(sessions, job_id, after_id)
        except SQLAlchemyError as exc:
            # Headers are long gone, so no problem+json: end the stream and let the
            # client reconnect with Last-Event-ID once the database is back.
            log.warning(
                "api.events.stream_closed",
                extra=logs.fields(job_id=job_id, error=type(exc).__name__),
            )
            return
        yield from chunks
        now = time.monotonic()
        if chunks:
            last_write = now
        if ended or now - started > MAX_STREAM_SECONDS:
            return
        if now - last_write >= HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"
            last_write = now
        time.sleep(POLL_SECONDS)


def event_stream_response(
    sessions: sessionmaker[Session], job_id: str, after_id: str | None
) -> Response:
    """The streaming response (the caller has already checked the job is the tenant's)."""
    return Response(
        event_stream(sessions, job_id, after_id),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
