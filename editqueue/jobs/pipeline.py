"""A job's way through the worker: submit, wait (poll), store, finish.

Each step is entered through a claim (a conditional UPDATE) and leaves the job with a
timer in `next_poll_at`, so any step can die at any point and the sweep resumes it.
Vendor calls happen outside database transactions; no connection is held while waiting.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from editqueue import logs
from editqueue.config import Settings
from editqueue.db import autocommit
from editqueue.infra import outbox
from editqueue.infra.images import ImageFetchError, ImageRejected
from editqueue.infra.netguard import UnsafeURL
from editqueue.infra.storage import Storage, StorageError
from editqueue.jobs import routing
from editqueue.jobs import states as jobs
from editqueue.jobs.attempts import attempt_entry, attempt_log
from editqueue.jobs.errors import job_error, timeout_error
from editqueue.jobs.heartbeat import Heartbeat, StepLease
from editqueue.jobs.inputs import edit_request, prepare_inputs
from editqueue.jobs.lifecycle import complete_job, start_job
from editqueue.jobs.outputs import UnusableResult, store_outputs
from editqueue.jobs.status import TERMINAL, JobStage, JobStatus
from editqueue.metrics import ProviderStats
from editqueue.models import Job
from editqueue.providers.base import (
    BadOutput,
    Provider,
    ProviderError,
    RateLimited,
    TaskFailed,
    TaskStatus,
)
from editqueue.providers.limits import Limits
from editqueue.spend.cost import attempt_cost, total_cost
from editqueue.spend.prices import requested_megapixels

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Context:
    """What every step needs, built once per worker process."""

    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage
    publisher: outbox.Publisher
    provider: Callable[[str], Provider]
    downloads: httpx.Client  # vendor result links (SSRF-guarded, vendor endpoints allowed)
    user_urls: httpx.Client  # SSRF-guarded: user-supplied image URLs
    limits: Limits  # ProviderLimits (Redis) or LocalLimits, by EDITQUEUE_PROVIDER_LIMITS
    stats: ProviderStats
    # A freed slot or a job given back: let the dispatcher fill it now, not at beat's next
    # tick. Debounced (editqueue.doorbell); never raises.
    ring_dispatcher: Callable[[], None]
    # Runs a leased message in this process instead of publishing it, when it can (the
    # webhook of a job it just ended, to a receiver known to answer fast): returns None
    # when done here, or the message to publish instead. None: publish everything.
    run_here: Callable[[outbox.Leased], outbox.Leased | None] | None = None
    # Renews the leases of the steps running in this process (one thread, one UPDATE).
    heartbeat: Heartbeat = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.heartbeat = Heartbeat(
            self.sessions, self.settings.lease_seconds, time_limit=self.settings.step_time_limit
        )

    def publish(self, messages: list[outbox.Message]) -> None:
        """Publish messages right after their transaction committed."""
        outbox.publish_now(self.sessions, self.publisher, messages)

    def hand_over(self, messages: list[outbox.Message]) -> None:
        """After their transaction committed: run here what `run_here` takes, publish the rest.

        A job's webhooks all take this way (its start and its end alike), so a receiver
        that gets them in place gets them in order.
        """
        if self.run_here is None:
            self.publish(messages)
            return
        here = [m for m in messages if isinstance(m, outbox.Leased)]
        self.publish([m for m in messages if not isinstance(m, outbox.Leased)])
        # One broker round trip, one task and one claim fewer per webhook sent in place.
        handed_back: list[outbox.Message] = [m for m in map(self.run_here, here) if m is not None]
        self.publish(handed_back)

    def job_ended(self, messages: list[outbox.Message]) -> None:
        """After a job's end committed: refill its tenant's slot and send its webhooks."""
        self.ring_dispatcher()
        self.hand_over(messages)

    def available(self, name: str) -> bool:
        """Whether an adapter for this vendor can be built here."""
        try:
            self.provider(name)
        except (KeyError, ValueError):
            return False
        return True


# A vendor that calls back wakes the job itself when its task ends; polling it is then only
# the safety net for a lost callback, so it runs this many times less often. With 10,000
# KIE jobs at 30 s, polls every 2 s were a fifth of all the work.
CALLBACK_POLL_FACTOR = 4.0


def poll_delay(age_seconds: float, scale: float = 1.0) -> float:
    """Back off polling as a task ages: 2 s at first, 5 s after 30 s, 15 s after 2 min."""
    if age_seconds < 30:
        base = 2.0
    elif age_seconds < 120:
        base = 5.0
    else:
        base = 15.0
    return base * scale


def retry_delay(attempt: int, retry_after: float | None, scale: float = 1.0) -> float:
    """Back-off before another attempt: exponential with jitter, `Retry-After` wins if longer."""
    delay = min(60.0, 2.0 ** min(attempt, 6)) * random.uniform(0.8, 1.2) * scale
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _seconds_left(job: Job) -> float:
    return (job.deadline_at - _now()).total_seconds()


# -- entry points (called by the thin Celery tasks) ------------------------------------------


def run_submit(ctx: Context, job_id: str) -> None:
    """Claim a queued job and start its first attempt."""
    with logs.bound(job_id=job_id), ctx.heartbeat.step() as lease:
        _run_submit(ctx, job_id, lease)


def _run_submit(ctx: Context, job_id: str, lease: StepLease) -> None:
    with ctx.sessions() as session, session.begin():
        job = jobs.claim_queued(session, job_id, ctx.settings.lease_seconds)
        if job is None:
            return
        ids = start_job(session, job, storage=ctx.storage, settings=ctx.settings)
    lease.hold(job.id, job.lease_id)
    logs.bind(tenant=job.tenant_id)
    log.info("job.started")
    ctx.ring_dispatcher()
    ctx.hand_over(ids)
    _submit(ctx, job)


def run_advance(
    ctx: Context, job_id: str, lease_id: str, report: dict[str, Any] | None = None
) -> None:
    """Take over a leased job and do whatever its stage needs next.

    `report` is ignored: messages queued by older versions carried a callback's result,
    which is never trusted; a job woken by a callback polls the vendor like any other.
    """
    with logs.bound(job_id=job_id), ctx.heartbeat.step() as lease:
        _run_advance(ctx, job_id, lease_id, lease)


def _run_advance(ctx: Context, job_id: str, lease_id: str, lease: StepLease) -> None:
    error: dict[str, Any] | None = None
    with ctx.sessions() as session, session.begin():
        job = jobs.claim_lease(session, job_id, lease_id, ctx.settings.lease_seconds)
        if job is None:
            return
        lease.hold(job.id, job.lease_id)
        if job.deadline_at <= _now():
            error = timeout_error(job.provider)
        elif job.stage == JobStage.SUBMIT and job.attempts >= ctx.settings.max_attempts:
            error = _exhausted_error(job)
        ids = _fail(ctx, session, job, error) if error else []
    logs.bind(tenant=job.tenant_id, provider=job.provider)
    if error is not None:
        _release(ctx, job)
        ctx.job_ended(ids)
    elif job.stage == JobStage.WAIT and job.provider_task_id:
        _poll(ctx, job)
    else:
        _submit(ctx, job)


# -- submit -------------------------------------------------------------------------------------


def _submit(ctx: Context, job: Job) -> None:
    routed = routing.route(job.model, job.provider_pin, ctx.settings, ctx.available)
    candidates = routing.eligible(routed, attempt_log(job))
    if not candidates:
        if routed:  # every vendor left refused this job for good
            _fail_now(ctx, job, _exhausted_error(job))
        else:
            message = f"no configured provider serves {job.model}"
            _fail_now(ctx, job, job_error("provider_unavailable", message))
        return
    try:
        prepared = prepare_inputs(
            job, storage=ctx.storage, settings=ctx.settings, client=ctx.user_urls
        )
    except ImageRejected as exc:
        _fail_now(ctx, job, job_error("invalid_image", str(exc)))
        return
    except (ImageFetchError, StorageError) as exc:
        _retry_later(ctx, job, f"inputs: {exc}")
        return
    name = _acquire_provider(ctx, job, candidates, prepared.fetched)
    if name is None:
        return
    provider = ctx.provider(name)
    callback = None
    if provider.supports_callback:
        callback = f"{ctx.settings.public_url}/v1/callbacks/{name}/{job.callback_token}"
    with ctx.sessions() as session, session.begin():
        # Counted before the call: a worker dying inside it still used an attempt.
        attempt = jobs.begin_attempt(
            session,
            job.id,
            name,
            lease=job.lease_id,
            usage=dict(job.usage or {}),
            inputs=prepared.fetched,
        )
        if attempt is not None:
            job.attempts = attempt
            jobs.record_event(
                session, job, "attempt.started", {"attempt": attempt, "provider": name}
            )
    if attempt is None:
        log.info("job.submit.superseded", extra=logs.fields(provider=name))
        ctx.limits.release_slot(name, job.id)
        return
    logs.bind(provider=name)
    started = time.monotonic()
    try:
        status = provider.submit(edit_request(job, prepared.images, callback_url=callback))
    except ProviderError as exc:
        ctx.stats.observe(name, "submit", exc.code, time.monotonic() - started)
        log.warning(
            "job.submit.vendor_failed",
            extra=logs.fields(provider=name, code=exc.code, provider_code=exc.provider_code),
        )
        _provider_failed(ctx, job, name, exc)
        return
    ctx.stats.observe(name, "submit", status.state, time.monotonic() - started)
    _handle_status(ctx, job, name, status, first=True)


def _acquire_slot(ctx: Context, name: str, job_id: str, ttl: float) -> bool:
    """A concurrency slot at the vendor, reclaiming slots of jobs that ended meanwhile.

    A job canceled (or failed by the reaper) while it waits at a vendor has no worker left
    to give its slot back; rather than letting it block the vendor until the slot's TTL,
    a full vendor's holders are checked against their rows when a slot is refused.
    """
    if ctx.limits.acquire_slot(name, job_id, ttl):
        return True
    holders = ctx.limits.slot_holders(name)
    if not holders:
        return False
    with ctx.sessions() as session:
        ended = session.scalars(
            select(Job.id).where(Job.id.in_(holders), Job.status.in_(TERMINAL))
        ).all()
    for holder in ended:
        ctx.limits.release_slot(name, holder)
    return bool(ended) and ctx.limits.acquire_slot(name, job_id, ttl)


def _acquire_provider(
    ctx: Context, job: Job, candidates: list[str], fetched: list[dict[str, Any]] | None
) -> str | None:
    """Pick a vendor with room (cooldown, concurrency, rate); or reschedule and return None.

    `fetched`: the job's inputs as just fetched and stored, kept by the reschedule."""
    attempts = attempt_log(job)
    strategy = routing.strategy_for(ctx.settings, job.model, job.routing)
    ranking = routing.rank(
        strategy,
        candidates,
        settings=ctx.settings,
        limits=ctx.limits,
        model_id=job.model,
        params=job.params,
    )
    # The strategy's order breaks `choose`'s ties: failed vendors still go last.
    remaining = list(ranking.order)
    wait = None
    while remaining:
        choice = routing.choose(remaining, attempts, ctx.limits.cooldown_left)
        if choice.provider is None:
            wait = choice.wait
            break
        name = choice.provider
        slot_ttl = max(60.0, _seconds_left(job) + 60.0)
        if not _acquire_slot(ctx, name, job.id, slot_ttl):
            remaining.remove(name)
            wait = 1.0
            continue
        rate_wait = ctx.limits.acquire_request(name, f"{job.id}:{uuid.uuid4().hex}")
        if rate_wait > 0:
            ctx.limits.release_slot(name, job.id)
            remaining.remove(name)
            wait = rate_wait if wait is None else min(wait, rate_wait)
            continue
        job.usage = {**(job.usage or {}), "routing": ranking.record(name)}
        return name
    delay = max(0.05, wait or 1.0) + random.uniform(0, 0.05)
    with ctx.sessions() as session, session.begin():
        kept: dict[str, Any] = {"inputs": fetched} if fetched is not None else {}
        if jobs.schedule(session, job.id, delay=delay, lease=job.lease_id, **kept):
            jobs.record_event(session, job, "provider.busy", {"retry_in": round(delay, 2)})
    return None


# -- wait -----------------------------------------------------------------------------------------


def _poll(ctx: Context, job: Job) -> None:
    name = job.provider or ""
    rate_wait = ctx.limits.acquire_request(name, f"{job.id}:{uuid.uuid4().hex}")
    if rate_wait > 0:
        with ctx.sessions() as session, session.begin():
            jobs.schedule(session, job.id, delay=rate_wait, lease=job.lease_id)
        return
    started = time.monotonic()
    try:
        status = ctx.provider(name).poll(job.provider_task_id or "")
    except ProviderError as exc:
        ctx.stats.observe(name, "poll", exc.code, time.monotonic() - started)
        if exc.retryable:
            # Trouble reading the task is not trouble with the task: look again later.
            _schedule_poll(ctx, job, {"poll_error": exc.code, "message": exc.message})
            return
        _provider_failed(ctx, job, name, exc)
        return
    ctx.stats.observe(name, "poll", status.state, time.monotonic() - started)
    if status.state != "running":
        with autocommit(ctx.sessions) as connection:
            jobs.record_event(connection, job, "poll", {"state": status.state})
    _handle_status(ctx, job, name, status, first=False)


def _handle_status(ctx: Context, job: Job, name: str, status: TaskStatus, *, first: bool) -> None:
    if status.state == "succeeded":
        # The task's duration is the `fastest` strategy's sample.
        ctx.limits.record_success(name, task_seconds=routing.task_seconds(job.usage))
        _store_and_finish(ctx, job, name, status)
    elif status.state == "failed":
        error = status.error or TaskFailed(
            "provider_error", "the vendor reported a failed task", provider=name
        )
        # A failed task can still be billed (KIE says so in consumeCredits).
        _provider_failed(ctx, job, name, error, usage=status.usage)
    elif first:
        ctx.limits.record_success(name)
        usage = dict(job.usage or {})
        usage["provider_task_id"] = status.task_id
        with ctx.sessions() as session, session.begin():
            waiting = jobs.set_waiting(
                session,
                job.id,
                provider=name,
                task_id=status.task_id or "",
                delay=_poll_delay(ctx, name, 0),
                usage=usage,
                lease=job.lease_id,
            )
            if waiting:
                detail = {"provider": name, "task_id": status.task_id}
                jobs.record_event(session, job, "provider.task_created", detail)
            else:
                # Nobody follows this task now; the row still says it was made.
                _note(session, job, name, _attempt(name, "abandoned", job), status.task_id)
    else:
        _schedule_poll(ctx, job, {"state": "running", "progress": status.progress})


def _poll_delay(ctx: Context, name: str, age: float) -> float:
    """When to look at a vendor task of this age next (later for a vendor that calls back)."""
    calls_back = ctx.available(name) and ctx.provider(name).supports_callback
    factor = CALLBACK_POLL_FACTOR if calls_back else 1.0
    return poll_delay(age, ctx.settings.poll_scale * factor)


def _schedule_poll(ctx: Context, job: Job, detail: dict[str, Any]) -> None:
    age = (_now() - (job.started_at or _now())).total_seconds()
    with ctx.sessions() as session, session.begin():
        scheduled = jobs.schedule(
            session,
            job.id,
            delay=_poll_delay(ctx, job.provider or "", age),
            lease=job.lease_id,
            poll_count=job.poll_count + 1,
        )
        if scheduled:
            jobs.record_event(session, job, "poll", detail)


# -- store and finish ------------------------------------------------------------------------


def _store_and_finish(
    ctx: Context, job: Job, name: str, status: TaskStatus, *, client: httpx.Client | None = None
) -> None:
    try:
        outputs = store_outputs(
            job, status.outputs, storage=ctx.storage, client=client or ctx.downloads
        )
    except UnusableResult as exc:
        # The vendor made (and bills) these images even though they are of no use to us.
        unusable = BadOutput("provider_error", str(exc), provider=name)
        _provider_failed(ctx, job, name, unusable, usage=status.usage, images=len(status.outputs))
        return
    except UnsafeURL as exc:  # a result link pointing inside our network
        refused = BadOutput("provider_error", f"result link refused: {exc}", provider=name)
        _provider_failed(ctx, job, name, refused, usage=status.usage, images=len(status.outputs))
        return
    except (httpx.HTTPError, StorageError) as exc:
        _retry_later(ctx, job, f"results: {exc}")
        return
    if not outputs:
        empty = BadOutput("provider_error", "vendor returned no image", provider=name)
        _provider_failed(ctx, job, name, empty)
        return
    usage = dict(job.usage or {})
    usage.update(status.usage or {})
    usage["provider_task_id"] = status.task_id or job.provider_task_id
    usage["images"] = len(outputs)
    cost = _attempt_cost(ctx, job, name, status.usage, len(outputs), outputs)
    entry = _attempt(name, "succeeded", job, **({"cost": cost} if cost else {}))
    entries = [*attempt_log(job), entry]
    _set_cost(usage, entries)
    with ctx.sessions() as session, session.begin():
        finished = complete_job(
            session,
            job.id,
            JobStatus.SUCCEEDED,
            storage=ctx.storage,
            settings=ctx.settings,
            outputs=outputs,
            usage=usage,
            attempt_log=entries,
            provider=name,
        )
        if finished is None:  # the vendor did the work (and may bill it) all the same
            _note(session, job, name, entry, usage["provider_task_id"])
    ctx.limits.release_slot(name, job.id)
    if finished is None:
        log.info("job.result.discarded", extra=logs.fields(provider=name))
        return
    log.info("job.succeeded", extra=logs.fields(provider=name, outputs=len(outputs)))
    ctx.job_ended(finished.messages)


def _attempt(name: str | None, outcome: str, job: Job, **extra: Any) -> dict[str, Any]:
    return attempt_entry(name, outcome, job.attempts, **extra)


def _attempt_cost(
    ctx: Context,
    job: Job,
    name: str,
    usage: dict[str, Any] | None,
    images: int,
    outputs: list[dict[str, Any]] | None = None,
) -> dict[str, str] | None:
    """What this attempt cost (None: nothing billed, or an unknown price)."""
    sizes = [o["width"] * o["height"] for o in outputs or () if o.get("width") and o.get("height")]
    # Stored outputs say their size; before that, what the job asked for.
    megapixels = (
        sum(sizes) / len(sizes) / 1_000_000 if sizes else requested_megapixels(job.params or {})
    )
    return attempt_cost(ctx.settings, name, job.model, usage, images, megapixels=megapixels)


def _set_cost(usage: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    """usage["cost"]: the sum over every billed attempt (a vendor's own `cost` key gives way)."""
    usage.pop("cost", None)
    cost = total_cost(entries)
    if cost is not None:
        usage["cost"] = cost


def _note(
    session: Session, job: Job, name: str, entry: dict[str, Any], task_id: str | None = None
) -> None:
    """Keep an attempt on the job's row after its step could no longer move the job on."""
    jobs.note_attempt(session, job.id, provider=name, entry=entry, task_id=task_id)


def _provider_failed(
    ctx: Context,
    job: Job,
    name: str,
    exc: ProviderError,
    *,
    usage: dict[str, Any] | None = None,
    images: int = 0,
) -> None:
    """Leave this vendor for this attempt: fail over, back off, or fail the job.

    `usage` is what the vendor reported about the failed task and `images` how many
    outputs it made anyway: a billed failure still costs (see editqueue.spend.cost).
    """
    ctx.limits.release_slot(name, job.id)
    rate_limited = isinstance(exc, RateLimited)
    if rate_limited:
        # The vendor said when to come back; every worker skips it until then.
        ctx.limits.cool_down(name, exc.retry_after or 5.0)
    elif exc.retryable:
        ctx.limits.record_failure(name)
    outcome = "rate_limited" if rate_limited else "failed"
    entry = _attempt(
        name,
        outcome,
        job,
        error=exc.code,
        provider_code=exc.provider_code,
        reason=exc.message[:300],
        retryable=exc.retryable,
    )
    cost = None if rate_limited else _attempt_cost(ctx, job, name, usage, images)
    if cost is not None:
        entry["cost"] = cost
    attempts = [*attempt_log(job), entry]
    final_usage: dict[str, Any] | None = None
    if total_cost(attempts) is not None:
        final_usage = dict(job.usage or {})
        _set_cost(final_usage, attempts)
    delay = _next_attempt_delay(ctx, job, name, exc, attempts)
    finished = None
    with ctx.sessions() as session, session.begin():
        if delay is not None and delay < _seconds_left(job):
            requeued = jobs.requeue_attempt(
                session,
                job.id,
                delay=delay,
                attempt_log=attempts,
                lease=job.lease_id,
                refund=rate_limited,
            )
            if requeued:
                detail = {"provider": name, "error": exc.code, "retry_in": round(delay, 2)}
                jobs.record_event(session, job, "attempt.failed", detail)
                return
        else:
            finished = complete_job(
                session,
                job.id,
                JobStatus.FAILED,
                storage=ctx.storage,
                settings=ctx.settings,
                error=exc.as_dict(),
                usage=final_usage,
                attempt_log=attempts,
            )
        if finished is None:
            _note(session, job, name, entry)
    if finished:
        ctx.job_ended(finished.messages)


def _next_attempt_delay(
    ctx: Context, job: Job, name: str, exc: ProviderError, attempts: list[dict[str, Any]]
) -> float | None:
    """Seconds until the job's next attempt, or None when the job should fail now.

    The retry budget (`max_attempts`) counts vendor calls, not 429s. A fresh attempt goes
    at once to another vendor of the route when one is ready, else backs off on this one
    (if the failure allows this vendor again).
    """
    scope = routing.retry_scope(exc)
    if scope == "never":
        return None
    if scope != "free" and job.attempts >= ctx.settings.max_attempts:
        return None
    routed = routing.route(job.model, job.provider_pin, ctx.settings, ctx.available)
    candidates = routing.eligible(routed, attempts)
    if not candidates:
        return None
    choice = routing.choose(candidates, attempts, ctx.limits.cooldown_left)
    if choice.provider is not None and choice.provider != name:
        return 0.05 * ctx.settings.poll_scale
    failures = routing.failures_by_provider(attempts).get(name, 0) or 1
    return retry_delay(failures, exc.retry_after, ctx.settings.poll_scale)


def _retry_later(ctx: Context, job: Job, reason: str) -> None:
    """Transient trouble on our side of the vendor call: keep the stage, try again soon."""
    delay = retry_delay(job.poll_count + 1, None, ctx.settings.poll_scale)
    with ctx.sessions() as session, session.begin():
        scheduled = jobs.schedule(
            session, job.id, delay=delay, lease=job.lease_id, poll_count=job.poll_count + 1
        )
        if scheduled:
            jobs.record_event(session, job, "step.retry", {"reason": reason[:300]})


def _release(ctx: Context, job: Job) -> None:
    if job.provider:
        ctx.limits.release_slot(job.provider, job.id)


def _fail(ctx: Context, session: Session, job: Job, error: dict[str, Any]) -> list[outbox.Message]:
    """Fail the job in the caller's transaction; returns the messages to publish after it.

    Attempts billed before this end (a timeout, the budget spent) still count: complete_job
    sums them from the attempt log.
    """
    finished = complete_job(
        session, job.id, JobStatus.FAILED, storage=ctx.storage, settings=ctx.settings, error=error
    )
    return finished.messages if finished else []


def _fail_now(ctx: Context, job: Job, error: dict[str, Any]) -> None:
    with ctx.sessions() as session, session.begin():
        ids = _fail(ctx, session, job, error)
    _release(ctx, job)
    ctx.job_ended(ids)


def _exhausted_error(job: Job) -> dict[str, Any]:
    """The job's end once its budget is spent: the last vendor failure, as the vendor said it."""
    failures = [a for a in attempt_log(job) if a.get("outcome") == "failed"]
    if not failures:  # every attempt was cut short (a worker died inside the call)
        message = f"gave up after {job.attempts} attempts that never reported back"
        return job_error("provider_unavailable", message, provider=job.provider)
    last = failures[-1]
    return job_error(
        last.get("error") or "provider_error",
        last.get("reason") or f"gave up after {job.attempts} attempts",
        provider=last.get("provider"),
        provider_code=last.get("provider_code"),
        retryable=bool(last.get("retryable", True)),
    )
