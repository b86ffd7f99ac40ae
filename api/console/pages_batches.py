"""Batches: live progress and counts, cancel, and a link to each batch's jobs."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from api.console.blueprint import bp
from api.console.guard import viewer
from api.state import db, services
from editqueue.infra import outbox
from editqueue.jobs import batches
from editqueue.models import Batch

PAGE_SIZE = 25
# Shown in this order in counts and progress bars.
BAR_STATUSES = ("succeeded", "failed", "canceled", "running", "queued")


def _progress(batch: Batch) -> dict[str, Any]:
    counts = batches.count_jobs(db(), batch.id)
    total = counts["total"] or 1
    done = counts["succeeded"] + counts["failed"] + counts["canceled"]
    segments, x = [], 0.0
    for status in BAR_STATUSES:
        width = 100.0 * counts[status] / total
        if width:
            segments.append({"status": status, "x": round(x, 2), "width": round(width, 2)})
        x += width
    return {
        "batch": batch,
        "counts": counts,
        "done": done,
        "percent": round(100 * done / total),
        "segments": segments,
        "finished": batch.completed_at is not None or done == counts["total"],
    }


@bp.get("/batches")
def batches_page() -> str:
    """The tenant's batches, newest first, with live counts."""
    query = select(Batch).where(Batch.tenant_id == viewer().tenant_id)
    before = request.args.get("before", "")
    if before.startswith("bat"):
        query = query.where(Batch.id < before)
    rows = list(db().scalars(query.order_by(Batch.id.desc()).limit(PAGE_SIZE + 1)))
    more = len(rows) > PAGE_SIZE
    items = [_progress(b) for b in rows[:PAGE_SIZE]]
    return render_template(
        "console/batches.html",
        items=items,
        live=any(not i["finished"] for i in items),
        next_before=rows[PAGE_SIZE - 1].id if more else None,
        statuses=BAR_STATUSES,
    )


@bp.get("/batches/<batch_id>")
def batch_page(batch_id: str) -> str:
    """One batch's progress."""
    item = _progress(batches.get_batch(db(), viewer().tenant_id, batch_id))
    return render_template(
        "console/batch.html", item=item, live=not item["finished"], statuses=BAR_STATUSES
    )


@bp.post("/batches/<batch_id>/cancel")
def batch_cancel(batch_id: str) -> Response:
    """Cancel every live job, exactly as `POST /v1/batches/{id}/cancel`."""
    svc = services()
    session = db()
    ids = batches.cancel_batch(
        session, viewer().tenant_id, batch_id, storage=svc.storage, settings=svc.settings
    )
    session.commit()
    outbox.publish_committed(session, svc.publisher, ids)
    flash("batch canceled: its unfinished jobs were canceled", "ok")
    return redirect(url_for("console.batch_page", batch_id=batch_id))
