"""The transactional outbox: tasks are written with the change that needs them, then published.

A message is published right after its transaction commits (the fast path); whatever that
misses (broker down, process killed in between) the relay republishes. Publishing is
at-least-once, so every task is written to tolerate running twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from editqueue import logs
from editqueue.db import affected_rows
from editqueue.models import OutboxMessage

log = logging.getLogger(__name__)


# (task name, positional args) -> None; raises when the broker cannot take the message.
Publisher = Callable[[str, list[Any]], None]


@dataclass(frozen=True)
class Leased:
    """A task published after commit with no outbox row, for work whose row holds a lease.

    A delivery or a job step written with a lease is its own outbox: if this message is
    lost, the lease runs out and that row's sweep hands the work out again. One INSERT
    and one UPDATE fewer per message than an outbox row.
    """

    task: str
    args: tuple[Any, ...]


# What a transaction leaves to publish once it has committed: an outbox row id, or a task
# whose row is its own outbox.
Message = int | Leased


def add(session: Session, task: str, *args: Any) -> OutboxMessage:
    """Stage a task in the current transaction; returns the row (its id after flush)."""
    message = OutboxMessage(task=task, args=list(args))
    session.add(message)
    return message


def _publish_claimed(session: Session, rows: Sequence[Any], publisher: Publisher) -> int:
    sent = 0
    for row in rows:
        publisher(row.task, list(row.args))
        sent += 1
    return sent


def publish_now(
    factory: sessionmaker[Session], publisher: Publisher, messages: Sequence[Message]
) -> int:
    """Publish the given messages after their commit; leave them to the relay on failure."""
    if not any(isinstance(m, int) for m in messages):
        return _publish_leased(publisher, messages)  # no outbox row: no connection needed
    with factory() as session:
        return publish_committed(session, publisher, messages)


def publish_committed(session: Session, publisher: Publisher, messages: Sequence[Message]) -> int:
    """`publish_now` on a session whose transaction has just committed (no second checkout)."""
    ids = [m for m in messages if isinstance(m, int)]
    sent = _publish_leased(publisher, messages)
    return sent + _publish_rows(session, publisher, ids) if ids else sent


def _publish_leased(publisher: Publisher, messages: Sequence[Message]) -> int:
    sent = 0
    for message in messages:
        if isinstance(message, Leased):
            try:
                publisher(message.task, list(message.args))
                sent += 1
            except Exception as exc:  # the lease runs out and the row's sweep resends it
                log.warning("outbox.publish.failed", extra=logs.fields(error=str(exc)))
    return sent


def _publish_rows(session: Session, publisher: Publisher, ids: Sequence[int]) -> int:
    try:
        with session.begin():
            rows = session.execute(
                text(
                    "UPDATE outbox SET published_at = now() "
                    "WHERE id = ANY(:ids) AND published_at IS NULL RETURNING id, task, args"
                ),
                {"ids": list(ids)},
            ).all()
            # Marked first, published next, committed last: a broker error rolls the mark back.
            return _publish_claimed(session, rows, publisher)
    except Exception as exc:  # the broker being down must never fail the request
        log.warning("outbox.publish.failed", extra=logs.fields(error=str(exc)))
        return 0


def relay(
    factory: sessionmaker[Session],
    publisher: Publisher,
    *,
    older_than: float = 2.0,
    limit: int = 500,
) -> int:
    """Publish messages the fast path left behind; safe to run in several processes."""
    try:
        with factory() as session, session.begin():
            rows = session.execute(
                text(
                    "UPDATE outbox SET published_at = now() WHERE id IN ("
                    "  SELECT id FROM outbox WHERE published_at IS NULL"
                    "  AND created_at < now() - make_interval(secs => :age)"
                    "  ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
                    ") RETURNING id, task, args"
                ),
                {"age": older_than, "limit": limit},
            ).all()
            return _publish_claimed(session, rows, publisher)
    except Exception as exc:
        log.warning("outbox.relay.failed", extra=logs.fields(error=str(exc)))
        return 0


def prune(factory: sessionmaker[Session], *, keep_seconds: float = 86_400.0) -> int:
    """Delete messages published long ago."""
    with factory() as session, session.begin():
        result = session.execute(
            text("DELETE FROM outbox WHERE published_at < now() - make_interval(secs => :age)"),
            {"age": keep_seconds},
        )
        return affected_rows(result)


def backlog(session: Session) -> tuple[int, float]:
    """Unpublished messages and the age in seconds of the oldest (for metrics)."""
    row = session.execute(
        text(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) "
            "FROM outbox WHERE published_at IS NULL"
        )
    ).one()
    return int(row[0]), float(row[1])
