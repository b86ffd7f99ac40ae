"""Jobs: the filtered history with live rows, one job in full, and its actions."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from api.console.blueprint import bp
from api.console.guard import viewer
from api.errors import ApiProblem
from api.jobs import decode_cursor, encode_cursor, job_json
from api.params import parse_time
from api.state import db, services
from editqueue.catalog import resolve_model
from editqueue.infra import outbox
from editqueue.jobs import states as jobs
from editqueue.jobs.lifecycle import cancel_job
from editqueue.models import JOB_STATUSES, TERMINAL_STATUSES, Job
from editqueue.webhooks import log as webhook_log
from editqueue.webhooks import replay as webhook_replay

PAGE_SIZE = 50
# How many not-yet-final rows one poll refreshes (a page never holds more).
MAX_LIVE_IDS = PAGE_SIZE


def _time_arg(name: str, problems: list[str]) -> Any:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return parse_time(value, name)
    except ApiProblem:
        problems.append(f"{name}: not a date and time")
        return None


def _metadata_arg(problems: list[str]) -> dict[str, str]:
    """`metadata` as `key=value` (the REST API's `metadata[key]=value`, typed in one box)."""
    raw = request.args.get("metadata", "").strip()
    if not raw:
        return {}
    name, sep, value = raw.partition("=")
    if not sep or not name.strip():
        problems.append("metadata: write it as key=value")
        return {}
    return {name.strip(): value.strip()}


def _filters(problems: list[str]) -> jobs.JobFilter:
    statuses = [s for s in request.args.getlist("status") if s in JOB_STATUSES]
    model = request.args.get("model", "").strip() or None
    if model:
        resolved = resolve_model(model)
        model = resolved.id if resolved else model
    return jobs.JobFilter(
        statuses=statuses,
        model=model,
        provider=request.args.get("provider", "").strip() or None,
        batch_id=request.args.get("batch_id", "").strip() or None,
        created_after=_time_arg("created_after", problems),
        created_before=_time_arg("created_before", problems),
        metadata=_metadata_arg(problems),
    )


def _cursor(problems: list[str]) -> str | None:
    cursor = request.args.get("cursor")
    if not cursor:
        return None
    try:
        return decode_cursor(cursor)
    except ApiProblem:
        problems.append("that page link is not valid; showing the newest jobs")
        return None


def _rows(rows: list[Job]) -> list[dict[str, Any]]:
    return [job_json(j) for j in rows]


@bp.get("/jobs", endpoint="jobs")
def jobs_page() -> str:
    """The history, newest first, with the REST filters and cursor paging."""
    problems: list[str] = []
    filters = _filters(problems)
    before = _cursor(problems)
    rows, more = jobs.list_jobs(
        db(), viewer().tenant_id, filters, limit=PAGE_SIZE, before_id=before
    )
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor" and v]
    next_args = None
    if more and rows:
        next_args = [*args, ("cursor", encode_cursor(rows[-1].id))]
    live = [j.id for j in rows if j.status not in TERMINAL_STATUSES]
    return render_template(
        "console/jobs.html",
        jobs=_rows(rows),
        poll_query=_poll_query(args, live, rows[0].id if rows else "", first_page=before is None),
        problems=problems,
        statuses=JOB_STATUSES,
        chosen=set(filters.statuses),
        args=request.args,
        next_query=next_args,
        newest_query=args,
        first_page=before is None,
        providers=services().settings.configured_providers(),
    )


def _poll_query(
    args: list[tuple[str, str]], live: list[str], newest: str, *, first_page: bool
) -> list[tuple[str, str]] | None:
    """What the next poll asks for: the rows still live, and on the first page also the
    jobs newer than `newest` that match the page's filters (None: nothing can change)."""
    if not first_page:
        return [("ids", ",".join(live))] if live else None
    return [*args, ("ids", ",".join(live)), ("after", newest)]


@bp.get("/jobs/live")
def jobs_live() -> str:
    """The rows named in `ids` (at most a page) swapped in place, and (with `after`) the
    page's newer jobs put on top, all out of band: one request per viewer every 2 s."""
    tenant_id = viewer().tenant_id
    ids = [i for i in request.args.get("ids", "").split(",") if i.startswith("job_")]
    rows = []
    if ids:
        query = select(Job).where(Job.tenant_id == tenant_id, Job.id.in_(ids[:MAX_LIVE_IDS]))
        rows = list(db().scalars(query))
    fresh: list[Job] = []
    if "after" in request.args:
        after = request.args["after"]
        newest, _ = jobs.list_jobs(db(), tenant_id, _filters([]), limit=PAGE_SIZE, before_id=None)
        fresh = [j for j in newest if j.id > after]
    live = [j.id for j in [*fresh, *rows] if j.status not in TERMINAL_STATUSES][:MAX_LIVE_IDS]
    args = [(k, v) for k, v in request.args.items(multi=True) if k not in ("ids", "after") and v]
    top = fresh[0].id if fresh else request.args.get("after", "")
    return render_template(
        "console/_job_rows_live.html",
        jobs=_rows(rows),
        fresh=_rows(fresh),
        poll_query=_poll_query(args, live, top, first_page="after" in request.args),
    )


def _attempts(job: dict[str, Any]) -> list[dict[str, Any]]:
    usage = job.get("usage") or {}
    return list(usage.get("attempts") or [])


def _cost(job: dict[str, Any]) -> dict[str, Any] | None:
    """usage.cost {amount, currency, source}, or None while nothing billed is known."""
    cost = (job.get("usage") or {}).get("cost")
    return cost if isinstance(cost, dict) and "amount" in cost else None


@bp.get("/jobs/<job_id>")
def job_page(job_id: str) -> str:
    """One job: images side by side, parameters, timeline, attempts, deliveries, actions."""
    session = db()
    row = jobs.get_job(session, viewer().tenant_id, job_id)
    job = job_json(row)
    return render_template(
        "console/job.html",
        job=job,
        live=row.status not in TERMINAL_STATUSES,
        events=jobs.list_events(session, row),
        attempts=_attempts(job),
        cost=_cost(job),
        deliveries=webhook_log.job_log(session, row.id),
    )


@bp.post("/jobs/<job_id>/cancel")
def job_cancel(job_id: str) -> Response:
    """Cancel, exactly as `POST /v1/jobs/{id}/cancel` does."""
    svc = services()
    session = db()
    finished = cancel_job(
        session, viewer().tenant_id, job_id, storage=svc.storage, settings=svc.settings
    )
    session.commit()
    outbox.publish_committed(session, svc.publisher, finished.messages)
    flash("job canceled", "ok")
    return redirect(url_for("console.job_page", job_id=job_id))


@bp.post("/jobs/<job_id>/deliveries/retry")
def job_resend(job_id: str) -> Response:
    """Re-send the job's latest event, exactly as `POST /v1/jobs/{id}/deliveries/retry`."""
    svc = services()
    session = db()
    job = jobs.get_job(session, viewer().tenant_id, job_id)
    deliveries, ids = webhook_replay.resend_latest_job_event(
        session, job, storage=svc.storage, settings=svc.settings
    )
    session.commit()
    outbox.publish_committed(session, svc.publisher, ids)
    flash(f"re-sending the latest event to {len(deliveries)} target(s)", "ok")
    return redirect(url_for("console.job_page", job_id=job_id) + "#deliveries")
