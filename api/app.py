"""The Flask app factory."""

from __future__ import annotations

import logging

from flask import Flask
from sqlalchemy import Engine

from api import (
    admin,
    auth,
    batches,
    bodies,
    broker,
    callbacks,
    catalog,
    cors,
    deliveries,
    errors,
    files,
    hostile,
    jobs,
    metrics,
    ops,
    rate_limit,
    state,
    usage,
    webhook_endpoints,
    webhook_secret,
)
from api.console import wiring as console
from api.fast_json import FastJSONProvider
from editqueue import tasknames
from editqueue.config import Settings, get_settings
from editqueue.db import PING_IDLE_SECONDS, make_engine, make_session_factory
from editqueue.infra.doorbell import Doorbell
from editqueue.infra.storage import open_configured_storage

log = logging.getLogger(__name__)


# Connections kept open per API process. A gevent worker serves many requests at once, and
# every request past the pool's size opened a connection and closed it again at checkin:
# 3 % of the API's CPU at 16 callers, and a PostgreSQL backend started for each of them.
POOL_SIZE = 10
POOL_OVERFLOW = 10


def make_api_engine(database_url: str) -> Engine:
    """The API's engine: a pool sized for concurrent requests, pinged only when idle.

    Busy connections skip the ping; after a PostgreSQL restart a request on one that was
    used a moment before answers 503 (the pool then drops every old connection).
    """
    return make_engine(
        database_url,
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
        ping_idle_after=PING_IDLE_SECONDS,
    )


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API app from settings (the environment by default)."""
    settings = settings or get_settings()
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set")
    app = Flask("editqueue", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json = FastJSONProvider(app)
    engine = make_api_engine(settings.database_url)
    publisher_app = broker.make_publisher_app(settings)
    publisher = broker.make_publisher(publisher_app)
    app.extensions["editqueue"] = state.Services(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        storage=open_configured_storage(settings),
        publisher=publisher,
        broker_ping=broker.make_ping(settings.redis_url),
        ring_dispatcher=Doorbell(lambda: publisher(tasknames.DISPATCH, [])),
    )
    # The 414 comes before auth (it is about the request, not its sender); unstorable
    # values after it, as any other 4xx about a request's content.
    app.before_request(hostile.check_url_length)
    # Browsers send preflights without credentials: answered before key auth.
    cors.init_app(app, settings.cors_origins)
    app.before_request(auth.require_key)
    app.before_request(bodies.check_unsized_body)
    app.before_request(hostile.check_values)
    app.teardown_appcontext(state.close_db)
    errors.register(app)
    for blueprint in (
        jobs.bp,
        batches.bp,
        deliveries.bp,
        webhook_endpoints.bp,
        catalog.bp,
        webhook_secret.bp,
        callbacks.bp,
        files.bp,
        ops.bp,
        metrics.bp,
        usage.bp,
    ):
        app.register_blueprint(blueprint)
    console.register(app, settings)  # HTML pages at /console, outside the OpenAPI document
    if settings.admin_key is not None and settings.admin_key.get_secret_value():
        app.register_blueprint(admin.bp)  # absent, every /v1/admin path is a 404
    # After auth's hook (it needs the tenant) and the routes (it documents their 429).
    rate_limit.init_app(app, settings.redis_url)
    return app
