"""History at scale: list, get, events and deliveries reads over 1,000,000 jobs.

    python -m bench.history                      # seed once (COPY), then measure over HTTP
    python -m bench.history --explain            # also print EXPLAIN (ANALYZE, BUFFERS)
    python -m bench.history --retention          # then time retention on the table
    python -m bench.history --drop               # drop the benchmark database

The database (`eq_bench_history` on the machine's PostgreSQL, or --database-url) is kept
between runs, so the ~10 minute seed is paid once; a comment on the jobs table marks it
as seeded. Jobs go to 100 tenants with a skewed share (the largest ~6 %, the smallest
~0.3 %), spread over 90 days with ids minted at their creation time, a realistic status
mix (live jobs only in the last minutes), two models over five vendors, 5 % in batches,
metadata with customer/campaign/sku keys, three events per ended job and a delivery (with
its attempt) for the fifth of jobs that have a webhook URL. The reads go through the real
API (gunicorn, gevent workers) against that database, from one sequential client.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from sqlalchemy import Engine, select, text
from ulid import ULID

from bench import procs
from bench.infra import NO_REFUSALS
from bench.machine import tree_cpu
from bench.report import Report
from bench.stats import median, percentile
from editqueue.db import make_engine, make_session_factory, transaction
from editqueue.jobs import states
from editqueue.models import Tenant
from editqueue.standalone import processes
from editqueue.standalone.ports import free_port
from editqueue.standalone.supervisor import wait_for_http
from editqueue.tenants import create_api_key, create_tenant
from tests import servers
from tests.stack import ROOT, Stack

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/eq_bench_history"
TENANTS = 100
DAYS = 90
MODELS = {
    "seededit-3.0": ("ark", "vtrix", "cometapi", "acedata"),
    "seedream-4.0-edit": ("kie", "ark", "cometapi", "acedata"),
}
# status → share of ended jobs; the newest LIVE_MINUTES of history are queued/running.
ENDED = (("succeeded", 0.89), ("failed", 0.08), ("canceled", 0.03))
LIVE_MINUTES = 10
BATCH_SHARE = 0.05
BATCH_SIZE = 100
WEBHOOK_SHARE = 0.2
CUSTOMERS, CAMPAIGNS, SKUS = 200, 30, 5000
MARKER = "bench.history seeded"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _ulid(prefix: str, moment: float, rng: random.Random) -> str:
    millis = int(moment * 1000)
    return f"{prefix}_{ULID.from_bytes(millis.to_bytes(6, 'big') + rng.randbytes(10))}"


def _ts(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat()


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, separators=(",", ":"))
    # The generated text has no tabs, newlines or backslashes to escape.
    return str(value)


class Lines:
    """Rows in COPY text format, written to `sink` (a COPY or a spool file) in ~4 MB pieces."""

    def __init__(self, sink: Callable[[str], Any]) -> None:
        self.sink = sink
        self.buffer = io.StringIO()
        self.rows = 0

    def add(self, *values: Any) -> None:
        """Queue one row."""
        self.buffer.write("\t".join(_copy_value(v) for v in values) + "\n")
        self.rows += 1
        if self.buffer.tell() > 4_000_000:
            self.flush()

    def flush(self) -> None:
        """Send what is queued."""
        self.sink(self.buffer.getvalue())
        self.buffer = io.StringIO()


def _copy_spool(cur: psycopg.Cursor[Any], table: str, columns: str, spool: Path) -> None:
    """COPY a spool file of rows into `table`."""
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy, spool.open() as lines:
        while chunk := lines.read(4_000_000):
            copy.write(chunk)


# -- seeding -------------------------------------------------------------------------------

JOB_COLUMNS = (
    "id, tenant_id, batch_id, status, model, provider, prompt, params, provider_options,"
    " inputs, outputs, error, usage, attempt_log, attempts, metadata, webhook_url,"
    " webhook_events, poll_count, provider_task_id, deadline_at, created_at, started_at,"
    " completed_at, updated_at"
)
EVENT_COLUMNS = "id, job_id, tenant_id, type, terminal, detail, at"
DELIVERY_COLUMNS = (
    "id, tenant_id, job_id, event_id, event_type, url, payload, state, attempt, status_code,"
    " response_ms, last_attempt_at, created_at"
)
ATTEMPT_COLUMNS = "delivery_id, attempt, status_code, response_ms, at"


@dataclass
class Seeded:
    """What the seed wrote (for the report)."""

    jobs: int = 0
    events: int = 0
    deliveries: int = 0
    batches: int = 0
    seconds: float = 0.0


def _tenants(engine: Engine) -> list[str]:
    with transaction(make_session_factory(engine)) as session:
        return list(
            session.scalars(
                select(Tenant.id).where(Tenant.name.like("hist-%")).order_by(Tenant.name)
            )
        )


def _create_tenants(engine: Engine) -> list[str]:
    """The seeded tenants, created on the first run (a seed cut short reuses them)."""
    existing = _tenants(engine)
    if len(existing) == TENANTS:
        return existing
    with transaction(make_session_factory(engine)) as session:
        ids = [create_tenant(session, f"hist-{i:03d}").id for i in range(TENANTS)]
    return ids


def _job_times(count: int, now: float, rng: random.Random) -> list[float]:
    start = now - DAYS * 86400
    return sorted(rng.uniform(start, now - 1) for _ in range(count))


def seed(database_url: str, count: int, rng: random.Random) -> Seeded:
    """COPY `count` jobs with their events, deliveries and batches (one connection)."""
    engine = make_engine(database_url, pool_size=1)
    tenants = _create_tenants(engine)
    engine.dispose()
    weights = [1 / (i + 5) for i in range(TENANTS)]
    now = time.time()
    times = _job_times(count, now, rng)
    started = time.monotonic()
    result = Seeded()
    # Batches first (the jobs reference them): each batch is BATCH_SIZE consecutive jobs
    # of one tenant, created in the same second.
    batch_of: dict[int, tuple[str, str]] = {}
    batches: list[tuple[str, str, float]] = []
    for chunk in range(0, count, BATCH_SIZE):
        if rng.random() < BATCH_SHARE:
            tenant = rng.choices(tenants, weights)[0]
            batch_id = _ulid("bat", times[chunk], rng)
            batches.append((batch_id, tenant, times[chunk]))
            for index in range(chunk, min(count, chunk + BATCH_SIZE)):
                batch_of[index] = (batch_id, tenant)
                times[index] = times[chunk] + (index - chunk) * 0.001
    _copy_all(database_url, batches, batch_of, times, now, tenants, weights, rng, result)
    with psycopg.connect(_libpq(database_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    result.seconds = time.monotonic() - started
    return result


# A job's events and its delivery are derived from its row on the server: ids take the
# job id's time part (so they sort with it; 0/1/2 keep created < started < ended) and a
# digest of the job id as their random part (md5 hex is valid Crockford base32).
_EVENTS = """
INSERT INTO job_events (id, job_id, tenant_id, type, terminal, detail, at)
SELECT 'evt_' || substr(id, 5, 10) || '0' || upper(substr(md5(id), 1, 15)), id, tenant_id,
       'job.created', false, '{}'::jsonb, created_at FROM jobs
UNION ALL
SELECT 'evt_' || substr(id, 5, 10) || '1' || upper(substr(md5(id), 1, 15)), id, tenant_id,
       'job.started', false, jsonb_build_object('provider', provider), started_at
  FROM jobs WHERE started_at IS NOT NULL
UNION ALL
SELECT 'evt_' || substr(id, 5, 10) || '2' || upper(substr(md5(id), 1, 15)), id, tenant_id,
       'job.' || status, true, jsonb_build_object('status', status), completed_at
  FROM jobs WHERE completed_at IS NOT NULL
"""
_DELIVERIES = """
INSERT INTO deliveries (id, tenant_id, job_id, event_id, event_type, url, payload, state,
                        attempt, status_code, response_ms, last_attempt_at, created_at)
SELECT 'dlv_' || substr(id, 5, 10) || upper(substr(md5(id), 17, 16)), tenant_id, id,
       'evt_' || substr(id, 5, 10) || '2' || upper(substr(md5(id), 1, 15)), 'job.' || status,
       webhook_url,
       jsonb_build_object('type', 'job.' || status, 'data',
         jsonb_build_object('id', id, 'status', status, 'model', model,
                            'metadata', metadata))::text,
       'succeeded', 1, 200, 20 + (hashtext(id) & 255), completed_at + interval '50 ms',
       completed_at
  FROM jobs WHERE webhook_url IS NOT NULL AND completed_at IS NOT NULL
"""
# The same names and definitions as migrations 0001 (checked by test_migrations).
_EVENT_INDEXES_DROP = (
    "ALTER TABLE job_events DROP CONSTRAINT pk_job_events",
    "DROP INDEX ix_job_events_job",
    "DROP INDEX uq_job_events_terminal",
)
_EVENT_INDEXES_CREATE = (
    "ALTER TABLE job_events ADD CONSTRAINT pk_job_events PRIMARY KEY (id)",
    "CREATE INDEX ix_job_events_job ON job_events (job_id, id)",
    "CREATE UNIQUE INDEX uq_job_events_terminal ON job_events (job_id) WHERE terminal",
)
_ATTEMPTS = """
INSERT INTO delivery_attempts (delivery_id, attempt, status_code, response_ms, at)
SELECT id, 1, 200, response_ms, last_attempt_at FROM deliveries
"""


def _copy_all(
    database_url: str,
    batches: list[tuple[str, str, float]],
    batch_of: dict[int, tuple[str, str]],
    times: list[float],
    now: float,
    tenants: list[str],
    weights: list[float],
    rng: random.Random,
    result: Seeded,
) -> None:
    # Batches and jobs by COPY; events and deliveries from the jobs, server-side; one
    # transaction, so a seed cut short leaves nothing (and no marker) behind.
    with psycopg.connect(_libpq(database_url)) as conn, conn.cursor() as cur:
        batch_columns = "id, tenant_id, total, metadata, created_at"
        with cur.copy(f"COPY batches ({batch_columns}) FROM STDIN") as copy:
            out = Lines(copy.write)
            for batch_id, tenant, moment in batches:
                campaign = {"campaign": f"camp-{rng.randrange(CAMPAIGNS)}"}
                out.add(batch_id, tenant, BATCH_SIZE, campaign, _ts(moment))
            out.flush()
        result.batches = len(batches)
        with cur.copy(f"COPY jobs ({JOB_COLUMNS}) FROM STDIN") as copy:
            out = Lines(copy.write)
            for index, moment in enumerate(times):
                batch = batch_of.get(index)
                in_batch = batch[0] if batch else None
                tenant = batch[1] if batch else rng.choices(tenants, weights)[0]
                _job_row(out, index, moment, now, tenant, in_batch, rng)
            out.flush()
            result.jobs = out.rows
        print(f"copied {result.jobs} jobs; deriving events and deliveries", flush=True)
        # 3 M events are inserted faster into a bare table and indexed once after (a sort
        # per index instead of 3 M random index inserts), as a restore does.
        for statement in _EVENT_INDEXES_DROP:
            cur.execute(statement)
        result.events = cur.execute(_EVENTS).rowcount
        for statement in _EVENT_INDEXES_CREATE:
            cur.execute(statement)
        result.deliveries = cur.execute(_DELIVERIES).rowcount
        cur.execute(_ATTEMPTS)
        cur.execute(f"COMMENT ON TABLE jobs IS '{MARKER} {result.jobs}'")
        conn.commit()


def _job_row(
    out: Lines,
    index: int,
    moment: float,
    now: float,
    tenant: str,
    batch_id: str | None,
    rng: random.Random,
) -> None:
    job_id = _ulid("job", moment, rng)
    model = "seedream-4.0-edit" if rng.random() < 0.6 else "seededit-3.0"
    live = moment > now - LIVE_MINUTES * 60
    if live:
        status = "queued" if rng.random() < 0.5 else "running"
    else:
        draw = rng.random()
        status = "succeeded" if draw < 0.89 else "failed" if draw < 0.97 else "canceled"
    provider = None
    if status != "queued":
        draw = rng.random()
        vendors = MODELS[model]
        provider = vendors[0 if draw < 0.55 else 1 if draw < 0.8 else 2 if draw < 0.92 else 3]
    started_at = moment + rng.uniform(0.05, 1.0) if provider else None
    completed_at = (started_at or moment) + rng.uniform(2, 40) if not live else None
    meta = []
    if rng.random() < 0.9:
        meta.append(f'"customer":"cus_{rng.randrange(CUSTOMERS)}"')
    if rng.random() < 0.5:
        meta.append(f'"campaign":"camp-{rng.randrange(CAMPAIGNS)}"')
    if rng.random() < 0.7:
        meta.append(f'"sku":"sku-{rng.randrange(SKUS)}"')
    inputs = f'[{{"source":"url","url":"https://cdn.example.com/in/{job_id}.jpg","key":null,"sha256":null}}]'
    outputs = "[]"
    if status == "succeeded":
        outputs = (
            f'[{{"index":0,"key":"{tenant}/{job_id}/out/0.png","content_type":"image/png",'
            f'"width":1024,"height":1024,"bytes":{rng.randrange(200_000, 2_000_000)},'
            f'"sha256":"{rng.getrandbits(256):064x}"}}]'
        )
    error = (
        '{"code":"provider_error","message":"vendor refused the edit"}'
        if status == "failed"
        else None
    )
    webhook = "https://hooks.example.com/eq" if rng.random() < WEBHOOK_SHARE else None
    out.add(
        job_id,
        tenant,
        batch_id,
        status,
        model,
        provider,
        f"{PROMPTS[index % len(PROMPTS)]} #{index}",
        f'{{"n":1,"seed":{rng.getrandbits(31)},"watermark":false,"guidance_scale":5.5}}',
        "{}",
        inputs,
        outputs,
        error,
        '{"images":1}' if status == "succeeded" else None,
        "[]",
        1 if provider else 0,
        "{" + ",".join(meta) + "}",
        webhook,
        "[]",
        0,
        f"task-{index}" if provider else None,
        _ts(moment + 600),
        _ts(moment),
        _ts(started_at) if started_at else None,
        _ts(completed_at) if completed_at else None,
        _ts(completed_at or started_at or moment),
    )


PROMPTS = (
    "make it brighter",
    "replace the background with a beach at sunset",
    "remove the person on the left",
    "turn this into a watercolor painting of the same scene",
)


# -- the database and the API ----------------------------------------------------------------


def seeded_jobs(database_url: str) -> int | None:
    """How many jobs the seed wrote, or None if the database is not seeded."""
    with psycopg.connect(_libpq(database_url)) as conn:
        row = conn.execute("SELECT obj_description('jobs'::regclass, 'pg_class')").fetchone()
    comment = row[0] if row else None
    if not comment or not comment.startswith(MARKER):
        return None
    return int(comment.rsplit(" ", 1)[1])


def ensure_database(database_url: str) -> None:
    """Create the database if it is missing and migrate it (`editqueue migrate`)."""
    name = urlsplit(database_url).path.lstrip("/")
    server = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    with psycopg.connect(_libpq(server), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": database_url}
    subprocess.run([sys.executable, "-m", "editqueue", "migrate"], env=env, cwd=ROOT, check=True)


def drop(database_url: str) -> None:
    """Drop the benchmark database."""
    name = urlsplit(database_url).path.lstrip("/")
    server = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    with psycopg.connect(_libpq(server), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@contextlib.contextmanager
def api_server(database_url: str) -> Iterator[tuple[str, int]]:
    """The API under gunicorn (as tests/stack.py starts it) over the database; its URL."""
    workdir = Path(tempfile.mkdtemp(prefix="eq-history-api-"))
    redis_server = servers.start_private_redis(workdir)
    stack = Stack(
        database_url=database_url,
        redis_url=redis_server.url,
        workdir=workdir,
        extra_env=NO_REFUSALS,
    )
    port = free_port()
    env = {**stack.env, "EDITQUEUE_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    process = procs.spawn(
        processes.api_argv(f"127.0.0.1:{port}", quiet=True), env, workdir / "api.log"
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        procs.stop(process)
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# -- what is read ----------------------------------------------------------------------------


@dataclass
class TenantSample:
    """One tenant's key and ids to read."""

    tenant_id: str
    key: str
    jobs: int
    job_ids: list[str]
    delivered_ids: list[str]
    batch_ids: list[str]
    middle_id: str


def samples(engine: Engine, rng: random.Random) -> list[TenantSample]:
    """A key and a few ids of each seeded tenant."""
    found = []
    with transaction(make_session_factory(engine)) as session:
        for tenant in session.scalars(select(Tenant).where(Tenant.name.like("hist-%"))):
            key = create_api_key(session, tenant)
            ids = list(
                session.scalars(
                    text(
                        "SELECT id FROM jobs TABLESAMPLE SYSTEM (1) WHERE tenant_id = :t LIMIT 50"
                    ),
                    {"t": tenant.id},
                )
            )
            delivered = list(
                session.scalars(
                    text(
                        "SELECT job_id FROM deliveries TABLESAMPLE SYSTEM (2)"
                        " WHERE tenant_id = :t LIMIT 20"
                    ),
                    {"t": tenant.id},
                )
            )
            batches = list(
                session.scalars(
                    text("SELECT id FROM batches WHERE tenant_id = :t"), {"t": tenant.id}
                )
            )
            count = session.scalar(
                text("SELECT count(*) FROM jobs WHERE tenant_id = :t"), {"t": tenant.id}
            )
            middle = session.scalar(
                text("SELECT id FROM jobs WHERE tenant_id = :t ORDER BY id OFFSET :n LIMIT 1"),
                {"t": tenant.id, "n": (count or 0) // 2},
            )
            found.append(
                TenantSample(tenant.id, key, count or 0, ids, delivered, batches, middle or "")
            )
    return found


def _days_ago(days: float) -> str:
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    return moment.isoformat().replace("+00:00", "Z")


# Each list scenario: name → query parameters (a function of a tenant sample and the rng).
LIST_SCENARIOS: dict[str, Callable[[TenantSample, random.Random], dict[str, str]]] = {
    "no filter": lambda t, r: {},
    "status=failed (8 %)": lambda t, r: {"status": "failed"},
    "status=canceled (3 %)": lambda t, r: {"status": "canceled"},
    "status=running (rare)": lambda t, r: {"status": "running"},
    "model=seededit-3.0 (40 %)": lambda t, r: {"model": "seededit-3.0"},
    "provider=acedata (~7 %)": lambda t, r: {"provider": "acedata"},
    "batch_id": lambda t, r: {"batch_id": r.choice(t.batch_ids)},
    "metadata[customer] (0.45 %)": lambda t, r: {
        "metadata[customer]": f"cus_{r.randrange(CUSTOMERS)}"
    },
    "metadata[campaign] (1.7 %)": lambda t, r: {
        "metadata[campaign]": f"camp-{r.randrange(CAMPAIGNS)}"
    },
    "metadata[sku] (0.014 %)": lambda t, r: {"metadata[sku]": f"sku-{r.randrange(SKUS)}"},
    "created_after=1 day ago": lambda t, r: {"created_after": _days_ago(1)},
    "created_after=89 days ago": lambda t, r: {"created_after": _days_ago(89)},
    "created_before=60 days ago": lambda t, r: {"created_before": _days_ago(60)},
    "created_before=89.9 days ago": lambda t, r: {"created_before": _days_ago(89.9)},
}


def _cursor_params(t: TenantSample, r: random.Random) -> dict[str, str]:
    from api.jobs import encode_cursor  # the API's own cursor encoding

    return {"cursor": encode_cursor(t.middle_id)}


def _list_request(
    scenario: Callable[[TenantSample, random.Random], dict[str, str]],
    rng: random.Random,
    tenant: TenantSample,
) -> tuple[str, dict[str, str]]:
    return "/v1/jobs", {"limit": "100", **scenario(tenant, rng)}


@dataclass
class Timing:
    """One scenario's latencies (ms) and rows returned."""

    name: str
    ms: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    # CPU ms the API processes spent per request (what latency is on an idle core).
    api_cpu: float = 0.0


def measure(
    api_url: str, api_pid: int, tenants: list[TenantSample], rng: random.Random, requests: int
) -> list[Timing]:
    """p50/p95 of each read, tenants picked at random for every request."""
    clients = {
        t.tenant_id: httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {t.key}"}, timeout=30
        )
        for t in tenants
    }
    plan: list[tuple[str, Callable[[TenantSample], tuple[str, dict[str, str]]], list[TenantSample]]]
    plan = []
    for name, scenario in LIST_SCENARIOS.items():
        pool = [t for t in tenants if t.batch_ids] if name == "batch_id" else tenants
        plan.append((name, functools.partial(_list_request, scenario, rng), pool))
    plan.append(
        (
            CURSOR_SCENARIO,
            lambda t: ("/v1/jobs", {"limit": "100", **_cursor_params(t, rng)}),
            tenants,
        )
    )
    plan.append(
        (
            "GET /v1/jobs/{id}",
            lambda t: (f"/v1/jobs/{rng.choice(t.job_ids)}", {}),
            [t for t in tenants if t.job_ids],
        )
    )
    plan.append(
        (
            "GET /v1/jobs/{id}/events",
            lambda t: (f"/v1/jobs/{rng.choice(t.job_ids)}/events", {}),
            [t for t in tenants if t.job_ids],
        )
    )
    plan.append(
        (
            "GET /v1/jobs/{id}/deliveries",
            lambda t: (f"/v1/jobs/{rng.choice(t.delivered_ids)}/deliveries", {}),
            [t for t in tenants if t.delivered_ids],
        )
    )
    results = []
    try:
        for name, build, pool in plan:
            timing = Timing(name)
            cpu_before = 0.0
            for turn in range(requests + 10):
                if turn == 10:
                    cpu_before = tree_cpu(api_pid)
                tenant = rng.choice(pool)
                path, params = build(tenant)
                began = time.perf_counter()
                response = clients[tenant.tenant_id].get(path, params=params)
                took = 1000 * (time.perf_counter() - began)
                response.raise_for_status()
                if turn >= 10:  # the first few warm connections and caches
                    timing.ms.append(took)
                    body = response.json()
                    timing.rows.append(len(body["data"]) if "data" in body else 1)
            timing.api_cpu = 1000 * (tree_cpu(api_pid) - cpu_before) / requests
            results.append(timing)
            print(
                f"{name}: p50 {median(timing.ms):.1f} ms, p95 {percentile(timing.ms, 0.95):.1f} ms",
                flush=True,
            )
    finally:
        for client in clients.values():
            client.close()
    return results


def _bound_sql(engine: Engine, query: Any) -> tuple[str, dict[str, Any]]:
    """The SQL text and driver parameters SQLAlchemy sends for `query`."""
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    processors = compiled._bind_processors
    bound = {
        key: processors[key](value) if key in processors else value
        for key, value in compiled.params.items()
    }
    return compiled.string, bound


def _scenario_sql(
    engine: Engine, tenant: TenantSample, name: str, rng: random.Random
) -> tuple[dict[str, str], str, dict[str, Any]]:
    params = LIST_SCENARIOS.get(name)
    values = params(tenant, rng) if params else {}
    before = None if params else tenant.middle_id
    query = states.list_query(tenant.tenant_id, _job_filter(values), limit=101, before_id=before)
    return (values, *_bound_sql(engine, query))


CURSOR_SCENARIO = "later page (cursor mid-history)"


def healthz_floor(api_url: str, requests: int) -> list[float]:
    """Latencies of `GET /healthz`: what any request costs on this machine right now."""
    found = []
    with httpx.Client(base_url=api_url, timeout=30) as client:
        for turn in range(requests + 10):
            began = time.perf_counter()
            client.get("/healthz")
            if turn >= 10:
                found.append(1000 * (time.perf_counter() - began))
    return found


def explain(engine: Engine, tenant: TenantSample, rng: random.Random) -> list[tuple[str, str]]:
    """EXPLAIN (ANALYZE, BUFFERS) of list_jobs' query for each list scenario, for one tenant."""
    plans = []
    for name in [*LIST_SCENARIOS, CURSOR_SCENARIO]:
        if name == "batch_id" and not tenant.batch_ids:
            continue
        values, sql, bound = _scenario_sql(engine, tenant, name, rng)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, bound).all()
        plans.append((f"{name} {values}", "\n".join(r[0] for r in rows)))
    return plans


def sql_timings(
    engine: Engine, tenants: list[TenantSample], rng: random.Random, requests: int
) -> dict[str, list[float]]:
    """Milliseconds of each list query alone (execute + fetch of 101 rows), random tenants."""
    found: dict[str, list[float]] = {}
    with engine.connect() as conn:
        for name in [*LIST_SCENARIOS, CURSOR_SCENARIO]:
            pool = [t for t in tenants if t.batch_ids] if name == "batch_id" else tenants
            found[name] = []
            for turn in range(requests + 5):
                _, sql, bound = _scenario_sql(engine, rng.choice(pool), name, rng)
                began = time.perf_counter()
                conn.exec_driver_sql(sql, bound).all()
                if turn >= 5:
                    found[name].append(1000 * (time.perf_counter() - began))
            conn.rollback()
    return found


def _job_filter(values: dict[str, str]) -> states.JobFilter:
    metadata = {k[len("metadata[") : -1]: v for k, v in values.items() if k.startswith("metadata[")}

    def parse(name: str) -> dt.datetime | None:
        value = values.get(name)
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    return states.JobFilter(
        statuses=[values["status"]] if "status" in values else (),
        model=values.get("model"),
        provider=values.get("provider"),
        batch_id=values.get("batch_id"),
        created_after=parse("created_after"),
        created_before=parse("created_before"),
        metadata=metadata,
    )


class Reader(threading.Thread):
    """List queries (no filter / a status filter) in a loop, timing each, until stopped."""

    def __init__(self, engine: Engine, tenants: list[TenantSample], rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.engine, self.tenants, self.rng = engine, tenants, random.Random(rng.random())
        self.ms: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stopping.is_set():
                name = self.rng.choice(("no filter", "status=failed (8 %)"))
                _, sql, bound = _scenario_sql(
                    self.engine, self.rng.choice(self.tenants), name, self.rng
                )
                began = time.perf_counter()
                conn.exec_driver_sql(sql, bound).all()
                conn.rollback()
                self.ms.append(1000 * (time.perf_counter() - began))
                time.sleep(0.02)

    def window(self, seconds: float) -> list[float]:
        """Run for `seconds` in the foreground and return the timings."""
        self.start()
        time.sleep(seconds)
        return self.stop()

    def stop(self) -> list[float]:
        self.stopping.set()
        self.join()
        return self.ms


def _counts(database_url: str) -> dict[str, int]:
    with psycopg.connect(_libpq(database_url)) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in ("jobs", "job_events", "deliveries", "delivery_attempts", "batches")
        }


def retention_bench(
    database_url: str, engine: Engine, tenants: list[TenantSample], rng: random.Random, days: int
) -> Report:
    """Set every tenant's retention to `days`, run one retention pass, time it and its effect."""
    from editqueue.infra.storage import LocalStorage
    from editqueue.jobs.retention import run_retention

    report = Report(title=f"Retention: one pass over {len(tenants)} tenants at {days} days")
    before = _counts(database_url)
    baseline = Reader(engine, tenants, rng).window(20)
    with transaction(make_session_factory(engine)) as session:
        session.execute(
            text("UPDATE tenants SET retention_days = :d WHERE name LIKE 'hist-%'"), {"d": days}
        )
    root = Path(tempfile.mkdtemp(prefix="eq-history-objects-"))
    # The seeded objects exist only as keys: each delete is still one unlink of the store.
    storage = LocalStorage(root, "http://127.0.0.1", b"bench")
    reader = Reader(engine, tenants, rng)
    reader.start()
    began = time.perf_counter()
    purged = run_retention(make_session_factory(engine), storage, default_days=None)
    took = time.perf_counter() - began
    during = reader.stop()
    shutil.rmtree(root, ignore_errors=True)
    after = _counts(database_url)
    removed = {table: before[table] - after[table] for table in before}
    rows = sum(removed.values())
    report.header = ["figure", "value"]
    report.rows += [
        ["jobs deleted", f"{removed['jobs']:,} of {before['jobs']:,}"],
        [
            "events / deliveries / attempts / batches deleted (cascade and leftovers)",
            " / ".join(
                f"{removed[t]:,}"
                for t in ("job_events", "deliveries", "delivery_attempts", "batches")
            ),
        ],
        ["stored objects deleted", f"{purged.objects:,}"],
        ["wall time", f"{took:.1f} s"],
        ["delete rate", f"{removed['jobs'] / took:,.0f} jobs/s, {rows / took:,.0f} rows/s"],
        ["write transactions", f"{purged.transactions:,} (≤ 500 jobs each)"],
        [
            "longest write transaction (the longest any row lock was held)",
            f"{1000 * purged.longest_transaction:.0f} ms",
        ],
        [
            "concurrent list query before: p50 / p95 / max ms",
            f"{median(baseline):.1f} / {percentile(baseline, 0.95):.1f} / {max(baseline):.1f}",
        ],
        [
            "concurrent list query during: p50 / p95 / max ms",
            f"{median(during):.1f} / {percentile(during, 0.95):.1f} / {max(during):.1f}",
        ],
    ]
    report.notes.append(
        "table sizes after: " + ", ".join(f"{n} {s}" for n, s in table_sizes(database_url))
    )
    return report


def table_sizes(database_url: str) -> list[tuple[str, str]]:
    """pg_total_relation_size of the history tables, pretty-printed."""
    with psycopg.connect(_libpq(database_url)) as conn:
        return conn.execute(
            "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class"
            " WHERE relname IN ('jobs', 'job_events', 'deliveries', 'delivery_attempts')"
            " ORDER BY relname"
        ).fetchall()


def main() -> None:
    """Seed once, then measure the reads (and optionally retention)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per read")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--seed-only", action="store_true")
    parser.add_argument("--retention", action="store_true", help="then time retention")
    parser.add_argument("--retention-days", type=int, default=80, help="retention to apply")
    parser.add_argument("--skip-reads", action="store_true", help="only the retention run")
    parser.add_argument("--drop", action="store_true", help="drop the database and exit")
    args = parser.parse_args()
    if args.drop:
        drop(args.database_url)
        return
    # SIGTERM unwinds like Ctrl-C, so the API and its Redis are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rng = random.Random(12)
    ensure_database(args.database_url)
    seeded = seeded_jobs(args.database_url)
    if seeded is None:
        print(f"seeding {args.jobs} jobs ...", flush=True)
        info = seed(args.database_url, args.jobs, rng)
        print(f"seeded {info} in {info.seconds:.0f} s", flush=True)
        seeded = info.jobs
    else:
        print(f"already seeded with {seeded} jobs", flush=True)
    if args.seed_only:
        return
    engine = make_engine(args.database_url, pool_size=2)
    tenants = samples(engine, rng)
    if args.skip_reads:
        if args.retention:
            print(
                retention_bench(
                    args.database_url, engine, tenants, rng, args.retention_days
                ).markdown()
            )
        engine.dispose()
        return
    report = Report(title=f"History at {seeded:,} jobs")
    report.header = [
        "read",
        "HTTP p50 ms",
        "HTTP p95 ms",
        "API CPU ms/request",
        "SQL p50 ms",
        "SQL p95 ms",
        "rows",
    ]
    with api_server(args.database_url) as (api_url, api_pid):
        floor = healthz_floor(api_url, args.requests)
        timings = measure(api_url, api_pid, tenants, rng, args.requests)
    sql = sql_timings(engine, tenants, rng, args.requests)
    report.rows.append(
        [
            "`GET /healthz` (the HTTP floor under this load)",
            f"{median(floor):.1f}",
            f"{percentile(floor, 0.95):.1f}",
            "",
            "",
            "",
            "",
        ]
    )
    for timing in timings:
        alone = sql.get(timing.name, [])
        report.rows.append(
            [
                timing.name,
                f"{median(timing.ms):.1f}",
                f"{percentile(timing.ms, 0.95):.1f}",
                f"{timing.api_cpu:.1f}",
                f"{median(alone):.1f}" if alone else "",
                f"{percentile(alone, 0.95):.1f}" if alone else "",
                f"{median(timing.rows):.0f}",
            ]
        )
    lists = [t for t in timings if not t.name.startswith("GET")]
    reads = [t for t in timings if t.name.startswith("GET")]
    worst_list = max(percentile(t.ms, 0.95) for t in lists)
    worst_read = max(
        percentile(t.ms, 0.95) for t in reads if "{id}" in t.name and not t.name.endswith("s")
    )
    report.target(
        "list page of 100, any single filter, p95 < 50 ms",
        worst_list < 50,
        f"worst p95 {worst_list:.1f} ms",
    )
    report.target("job by id p95 < 20 ms", worst_read < 20, f"p95 {worst_read:.1f} ms")
    report.notes.append(
        "table sizes: " + ", ".join(f"{n} {s}" for n, s in table_sizes(args.database_url))
    )
    print(report.markdown())
    if args.explain:
        biggest = max(tenants, key=lambda t: t.jobs)
        print(f"EXPLAIN for the largest tenant ({biggest.jobs} jobs):")
        for name, plan in explain(engine, biggest, rng):
            print(f"\n### {name}\n{plan}")
    if args.retention:
        print(
            retention_bench(args.database_url, engine, tenants, rng, args.retention_days).markdown()
        )
    engine.dispose()


if __name__ == "__main__":
    main()
