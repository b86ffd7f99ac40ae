"""The worker process's long-lived pieces: engine, storage, HTTP clients, vendor adapters."""

from __future__ import annotations

import functools
import logging
import threading

import httpx

from editqueue import logs, tasknames
from editqueue.config import PROVIDERS, Settings, get_settings
from editqueue.db import PING_IDLE_SECONDS, make_engine, make_session_factory
from editqueue.infra import outbox
from editqueue.infra.delayed import Delayed
from editqueue.infra.doorbell import Doorbell
from editqueue.infra.netguard import Endpoint, endpoint_of, guarded_client
from editqueue.infra.storage import open_configured_storage
from editqueue.jobs.pipeline import Context
from editqueue.metrics import ProviderStats
from editqueue.providers.limits import Limit, open_limits
from editqueue.providers.registry import get_provider
from editqueue.webhooks import delivery as deliveries

log = logging.getLogger(__name__)
_lock = threading.Lock()
_context: Context | None = None
_delayed = Delayed("job-timers")


def _publisher(task: str, args: list) -> None:
    from worker.celery_app import app

    # ignore_result: otherwise send_task builds a result backend per thread (Celery keeps
    # backends thread-local, and building one scans entry points), on every new thread.
    app.send_task(task, args=args, ignore_result=True, retry=True, retry_policy={"max_retries": 2})


def get() -> Context:
    """The process's pipeline context (built on first use)."""
    global _context
    with _lock:
        if _context is None:
            _context = _build()
        return _context


def delayed() -> Delayed:
    """This process's sub-second timers (see editqueue.delayed)."""
    return _delayed


def reset() -> None:
    """Forget the context (after a fork)."""
    global _context
    with _lock:
        _context = None


def vendor_endpoints(settings: Settings) -> tuple[Endpoint, ...]:
    """The host:port of every configured vendor's base URL, and of the sandbox's public URL."""
    urls = [settings.provider_base_url(p) for p in settings.configured_providers()]
    if settings.sandbox_public_url:
        urls.append(settings.sandbox_public_url)
    return tuple(dict.fromkeys(endpoint_of(url) for url in urls))


def _run_here(ctx: Context, message: outbox.Leased) -> outbox.Leased | None:
    """Send a just-created delivery from this process when it can (Context.run_here)."""
    if message.task != tasknames.DELIVER_WEBHOOK:
        return message
    delivery_id, lease = message.args
    try:
        fresh = deliveries.send_in_place(
            ctx.sessions, delivery_id, lease, client=ctx.user_urls, settings=ctx.settings
        )
    except Exception:
        # The delivery keeps its lease in its row; the sweep hands it out when that ends.
        log.exception("webhook.send_in_place.failed", extra=logs.fields(delivery_id=delivery_id))
        return None
    return None if fresh is None else outbox.Leased(tasknames.DELIVER_WEBHOOK, (delivery_id, fresh))


def _build() -> Context:
    settings = get_settings()
    assert settings.database_url, "DATABASE_URL is not set"
    pool = settings.worker_concurrency + 4
    engine = make_engine(
        settings.database_url, pool_size=pool, max_overflow=pool, ping_idle_after=PING_IDLE_SECONDS
    )
    timeout = httpx.Timeout(settings.provider_timeout, connect=10.0)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    context = Context(
        settings=settings,
        sessions=make_session_factory(engine),
        storage=open_configured_storage(settings),
        publisher=_publisher,
        provider=lambda name: get_provider(name, settings),
        # Vendor result links pass the same guard as user URLs, but with the configured vendor
        # endpoints allowed instead of the user allowance: a vendor (or whoever answers for
        # it) must not be able to point us at the metadata service or our own network.
        downloads=guarded_client(
            vendor_endpoints(settings), timeout=timeout, limits=limits, follow_redirects=True
        ),
        user_urls=guarded_client(settings.allow_private_urls, timeout=timeout),
        # EDITQUEUE_PROVIDER_LIMITS picks Redis (shared by every worker) or this process's memory.
        limits=open_limits(
            settings.provider_limits,
            settings.redis_url,
            {p: Limit(*settings.provider_limit(p)) for p in PROVIDERS},
            failure_threshold=settings.provider_failure_threshold,
            cooldown_seconds=settings.provider_cooldown,
        ),
        stats=ProviderStats(settings.redis_url),
        ring_dispatcher=Doorbell(lambda: _publisher(tasknames.DISPATCH, []), delayed=_delayed),
    )
    context.run_here = functools.partial(_run_here, context)
    return context
