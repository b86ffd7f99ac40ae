"""History retention: ended jobs older than their tenant's retention go, with what hangs off them.

A tenant's `retention_days` (NULL: the deployment's EDITQUEUE_RETENTION_DAYS; both unset:
keep forever) bounds how old, by `created_at`, an ended job may get. Deleting a job row
takes its events, deliveries and delivery attempts with it (ON DELETE CASCADE); its stored
inputs and outputs are deleted here, and old empty batches, tenant events and the settled
deliveries of tenant events (which have no job to cascade from) go too.

Work is done in small batches, each in two short transactions with no lock held between
them, and never across a storage call:

1. read the next `batch_size` candidates (keyset on the time-sortable id, so skipped rows
   are not read again in the same run), with their object keys;
2. delete their objects from storage;
3. delete the rows that are still candidates (`FOR UPDATE SKIP LOCKED`: a row someone
   holds is left for the next run, never waited on; `lock_timeout` bounds the cascade).

Objects go before rows on purpose. If the process dies between 2 and 3, the rows remain
and still match, so the next run deletes their (already missing: deletes are idempotent)
objects again and then the rows: nothing is orphaned, and a row points at a deleted object
only until that next run — and only a row of an ended job past its retention, which no
one is waiting on. The other order would orphan objects forever on a crash after the
commit, since no row would remember their keys. A job whose object deletion fails keeps
its row (and its remaining objects) until a run where storage answers.

Ended jobs never change their inputs or outputs, so reading the keys without a lock is
safe. Jobs with a webhook delivery still pending are kept until it is settled.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import String

from editqueue import logs
from editqueue.db import affected_rows
from editqueue.infra.storage import Storage, StorageError
from editqueue.jobs.states import ID_CLOCK_SLACK, id_floor, utcnow
from editqueue.jobs.status import TERMINAL

log = logging.getLogger(__name__)

BATCH_SIZE = 500
# A cascade that meets a lock waits at most this long, then the batch is retried next run.
LOCK_TIMEOUT = "2s"

_TERMINAL = ", ".join(f"'{status}'" for status in TERMINAL)

# The candidates of one tenant: ended, created before the cutoff, no delivery still
# pending; walked oldest first on ix_jobs_tenant_created from where the last batch ended.
_CANDIDATES = text(
    f"""
    SELECT j.id, j.inputs, j.outputs FROM jobs j
    WHERE j.tenant_id = :tenant_id AND j.id > :after_id AND j.id < :id_bound
      AND j.created_at < :cutoff AND j.status IN ({_TERMINAL})
      AND NOT EXISTS (
        SELECT 1 FROM deliveries d WHERE d.job_id = j.id AND d.state = 'pending')
    ORDER BY j.id
    LIMIT :limit
    """
)
# The same conditions again at delete time: a row that stopped qualifying stays.
_DELETE = text(
    f"""
    DELETE FROM jobs WHERE id IN (
      SELECT j.id FROM jobs j
      WHERE j.id = ANY(:ids) AND j.created_at < :cutoff AND j.status IN ({_TERMINAL})
        AND NOT EXISTS (
          SELECT 1 FROM deliveries d WHERE d.job_id = j.id AND d.state = 'pending')
      FOR UPDATE SKIP LOCKED)
    """
).bindparams(bindparam("ids", type_=ARRAY(String)))
_DELETE_BATCHES = text(
    """
    DELETE FROM batches WHERE id IN (
      SELECT b.id FROM batches b
      WHERE b.tenant_id = :tenant_id AND b.created_at < :cutoff
        AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id)
      ORDER BY b.id LIMIT :limit FOR UPDATE SKIP LOCKED)
    """
)
_DELETE_TENANT_EVENTS = text(
    """
    DELETE FROM tenant_events WHERE id IN (
      SELECT id FROM tenant_events
      WHERE tenant_id = :tenant_id AND id < :id_bound AND at < :cutoff
      ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
    """
)
# Deliveries of tenant events (no job cascades them away), once settled.
_DELETE_JOBLESS_DELIVERIES = text(
    """
    DELETE FROM deliveries WHERE id IN (
      SELECT id FROM deliveries
      WHERE tenant_id = :tenant_id AND job_id IS NULL AND id < :delivery_id_bound
        AND created_at < :cutoff AND state <> 'pending'
      ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
    """
)


def effective_days(tenant_days: int | None, default_days: int | None) -> int | None:
    """The retention that applies: the tenant's, else the deployment's; None keeps forever."""
    return tenant_days if tenant_days is not None else default_days


def cutoff_for(days: int | None, now: dt.datetime) -> dt.datetime | None:
    """Jobs created before this instant are past retention (None: nothing ever is)."""
    if days is None:
        return None
    if days < 1:
        raise ValueError("retention must be at least one day")
    return now - dt.timedelta(days=days)


@dataclass
class Purged:
    """What one run removed (or, in a dry run, would remove) and how long it held locks."""

    jobs: int = 0
    objects: int = 0
    batches: int = 0
    tenant_events: int = 0
    tenant_deliveries: int = 0
    kept_for_storage: int = 0
    transactions: int = 0
    longest_transaction: float = 0.0
    # Rows deleted by each job-deleting transaction, in order.
    job_batches: list[int] = field(default_factory=list)
    tenants: dict[str, int] = field(default_factory=dict)

    def timed(self, began: float) -> None:
        """Count one write transaction that started at `began` (perf_counter)."""
        self.transactions += 1
        self.longest_transaction = max(self.longest_transaction, time.perf_counter() - began)


def tenant_cutoffs(
    session: Session, default_days: int | None, now: dt.datetime
) -> list[tuple[str, dt.datetime]]:
    """Every tenant whose history has a limit, with its cutoff."""
    rows = session.execute(text("SELECT id, retention_days FROM tenants ORDER BY id"))
    found = []
    for tenant_id, days in rows:
        cutoff = cutoff_for(effective_days(days, default_days), now)
        if cutoff is not None:
            found.append((tenant_id, cutoff))
    return found


def object_keys(inputs: Iterable[dict[str, Any]], outputs: Iterable[dict[str, Any]]) -> list[str]:
    """The storage keys a job's inputs and outputs hold (URL inputs hold none)."""
    return [
        item["key"] for item in (*inputs, *outputs) if isinstance(item, dict) and item.get("key")
    ]


def _delete_objects(storage: Storage, keys: list[str]) -> bool:
    """Delete every key; False if any failed (the job then keeps its row)."""
    ok = True
    for key in keys:
        try:
            storage.delete(key)
        except StorageError as exc:
            ok = False
            log.warning(
                "retention.object_delete_failed", extra=logs.fields(key=key, error=str(exc))
            )
    return ok


def purge_tenant(
    sessions: Callable[[], Session],
    storage: Storage,
    tenant_id: str,
    cutoff: dt.datetime,
    *,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
    purged: Purged | None = None,
) -> Purged:
    """Delete one tenant's ended jobs created before `cutoff`, `batch_size` per transaction."""
    purged = purged if purged is not None else Purged()
    bound = id_floor("job", cutoff + ID_CLOCK_SLACK)
    after = ""
    while True:
        with sessions() as session, session.begin():
            rows = session.execute(
                _CANDIDATES,
                {
                    "tenant_id": tenant_id,
                    "after_id": after,
                    "id_bound": bound,
                    "cutoff": cutoff,
                    "limit": batch_size,
                },
            ).all()
        if not rows:
            break
        after = rows[-1].id
        if dry_run:
            purged.jobs += len(rows)
            purged.objects += sum(len(object_keys(r.inputs, r.outputs)) for r in rows)
            continue
        doomed = []
        for row in rows:
            keys = object_keys(row.inputs, row.outputs)
            if _delete_objects(storage, keys):
                doomed.append(row.id)
                purged.objects += len(keys)
            else:
                purged.kept_for_storage += 1
        if doomed:
            deleted = _delete_rows(sessions, doomed, cutoff, purged)
            purged.jobs += deleted
            purged.tenants[tenant_id] = purged.tenants.get(tenant_id, 0) + deleted
        if len(rows) < batch_size:
            break
    if not dry_run:
        _purge_leftovers(sessions, tenant_id, cutoff, batch_size, purged)
    return purged


def _delete_rows(
    sessions: Callable[[], Session], ids: list[str], cutoff: dt.datetime, purged: Purged
) -> int:
    began = time.perf_counter()
    with sessions() as session, session.begin():
        session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        deleted = affected_rows(session.execute(_DELETE, {"ids": ids, "cutoff": cutoff}))
    purged.timed(began)
    purged.job_batches.append(deleted)
    return deleted


def _purge_leftovers(
    sessions: Callable[[], Session],
    tenant_id: str,
    cutoff: dt.datetime,
    batch_size: int,
    purged: Purged,
) -> None:
    """Old batches whose jobs are all gone, old tenant events and their settled
    deliveries, in batches too."""
    values = {
        "tenant_id": tenant_id,
        "cutoff": cutoff,
        "limit": batch_size,
        "id_bound": id_floor("evt", cutoff + ID_CLOCK_SLACK),
        "delivery_id_bound": id_floor("dlv", cutoff + ID_CLOCK_SLACK),
    }
    for statement, counter in (
        (_DELETE_BATCHES, "batches"),
        (_DELETE_TENANT_EVENTS, "tenant_events"),
        (_DELETE_JOBLESS_DELIVERIES, "tenant_deliveries"),
    ):
        while True:
            began = time.perf_counter()
            with sessions() as session, session.begin():
                session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                deleted = affected_rows(session.execute(statement, values))
            purged.timed(began)
            setattr(purged, counter, getattr(purged, counter) + deleted)
            if deleted < batch_size:
                break


def run_retention(
    sessions: Callable[[], Session],
    storage: Storage,
    *,
    default_days: int | None,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> Purged:
    """One retention pass over every tenant with a limit; returns what it removed."""
    moment = now or utcnow()
    with sessions() as session, session.begin():
        cutoffs = tenant_cutoffs(session, default_days, moment)
    purged = Purged()
    for tenant_id, cutoff in cutoffs:
        purge_tenant(
            sessions,
            storage,
            tenant_id,
            cutoff,
            batch_size=batch_size,
            dry_run=dry_run,
            purged=purged,
        )
    if purged.jobs or purged.batches or purged.tenant_events or purged.tenant_deliveries:
        log.info(
            "retention.purged",
            extra=logs.fields(
                jobs=purged.jobs,
                objects=purged.objects,
                batches=purged.batches,
                tenant_events=purged.tenant_events,
                tenant_deliveries=purged.tenant_deliveries,
                dry_run=dry_run,
            ),
        )
    return purged
