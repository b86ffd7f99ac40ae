"""Soak: many jobs across tenants and vendors under random faults, then the invariant audit.

    python -m bench.soak --jobs 2000 --tenants 5 --kill-every 20 --redis-restarts 2

Faults injected at random: bursts of vendor 5xx, 429 with Retry-After and malformed
answers, slow vendors, lost and duplicated callbacks, moderation rejections, worker
SIGKILLs and broker restarts. When
every job has ended, `editqueue.audit` checks the invariants with the webhook receipts.
The CI-sized run is tests/integration/test_soak.py; results of long runs go to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from editqueue.db import make_engine, make_session_factory, transaction
from editqueue.ids import new_id
from editqueue.infra.storage import open_storage
from editqueue.jobs.audit import Receipt, Violation, audit
from editqueue.jobs.status import TERMINAL
from editqueue.models import Delivery
from editqueue.standalone.embedded import EmbeddedRedis
from editqueue.standalone.ports import free_port
from editqueue.tenants import create_api_key, create_tenant
from tests import servers
from tests.conftest import data_url, png_bytes
from tests.stack import Stack, create_database, drop_database

# Faults a job carries itself (every request of that job sees them).
JOB_FAULTS: list[dict[str, Any] | None] = [
    None,
    None,
    None,
    {"fault": "latency", "seconds": 1.5},
    {"fault": "callback_lost"},
    {"fault": "callback_duplicate"},
    {"fault": "moderation"},
]
# Transient vendor trouble, queued for the next few matching requests of anyone.
VENDOR_FAULTS: list[dict[str, Any]] = [
    {"op": "create", "kind": "server_error", "count": 3, "params": {"status": 503}},
    {"op": "create", "kind": "rate_limit", "count": 2, "params": {"retry_after": 1}},
    {"op": "poll", "kind": "server_error", "count": 2, "params": {"status": 502}},
    {"op": "create", "kind": "malformed", "count": 1, "params": {}},
]


@dataclass
class SoakConfig:
    """How big and how hostile the soak is."""

    jobs: int = 200
    tenants: int = 3
    workers: int = 2
    kill_every: float = 15.0  # seconds between worker SIGKILLs (0 = never)
    redis_restarts: int = 1
    submit_seconds: float = 20.0  # spread submissions over this long
    drain_timeout: float = 300.0
    seed: int = 1


@dataclass
class SoakResult:
    """What happened, and what the audit found."""

    statuses: Counter[str]
    violations: list[Violation]
    receipts: int
    kills: int
    redis_restarts: int
    seconds: float
    log_dir: Path
    job_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A short report."""
        lines = [
            f"jobs: {sum(self.statuses.values())} {dict(self.statuses)}",
            f"webhook receipts: {self.receipts}; worker kills: {self.kills}; "
            f"redis restarts: {self.redis_restarts}; {self.seconds:.0f}s",
            f"violations: {len(self.violations)}",
            *(f"  {v}" for v in self.violations[:20]),
        ]
        return "\n".join(lines)


class _Receiver:
    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with outer.lock:
                    outer.receipts.append(Receipt(outer.url, dict(self.headers), body))
                # A receiver that sometimes fails: deliveries must be retried until they land.
                status = 503 if random.random() < 0.15 else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/soak"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _tenants(database_url: str, count: int) -> list[str]:
    engine = make_engine(database_url, pool_size=1)
    keys = []
    with transaction(make_session_factory(engine)) as session:
        for _ in range(count):
            keys.append(create_api_key(session, create_tenant(session, new_id("soak"))))
    engine.dispose()
    return keys


def _submit_all(stack: Stack, keys: list[str], receiver: _Receiver, config: SoakConfig) -> list:
    rng = random.Random(config.seed)
    images = [data_url(png_bytes((320, 240), seed=i)) for i in range(4)]
    clients = [
        httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {k}"}, timeout=30)
        for k in keys
    ]
    submitted = []
    pause = config.submit_seconds / max(1, config.jobs)
    for index in range(config.jobs):
        client = rng.choice(clients)
        model = rng.choice(("seededit-3.0", "seedream-4.0-edit"))
        body: dict[str, Any] = {
            "model": model,
            "prompt": f"soak {index} {new_id('p')}",
            "image": rng.choice(images),
            "seed": index,
        }
        fault = rng.choice(JOB_FAULTS)
        if fault:
            body["provider_options"] = {"_sandbox": fault}
        if rng.random() < 0.7:
            body["webhook_url"] = receiver.url
        response = client.post("/v1/jobs", json=body)
        response.raise_for_status()
        submitted.append((client, response.json()["id"]))
        time.sleep(pause)
    return submitted


def _chaos(
    stack: Stack,
    redis_server: EmbeddedRedis,
    config: SoakConfig,
    stop: threading.Event,
    counts: Counter[str],
) -> None:
    restart_at = {
        config.submit_seconds * (i + 1) / (config.redis_restarts + 1)
        for i in range(config.redis_restarts)
    }
    rng = random.Random(config.seed + 1)
    started = time.monotonic()
    next_kill = config.kill_every or float("inf")
    while not stop.wait(0.5):
        elapsed = time.monotonic() - started
        if rng.random() < 0.3:
            fault = rng.choice(VENDOR_FAULTS)
            vendor = rng.choice(("ark", "kie"))
            op = "create" if vendor == "ark" else fault["op"]
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(
                    f"{stack.sandbox_url}/_control/faults",
                    json={**fault, "vendor": vendor, "op": op},
                    timeout=5,
                )
        if elapsed >= next_kill:
            stack.kill_worker()
            stack.start_worker()
            counts["kills"] += 1
            next_kill += config.kill_every
        for moment in sorted(restart_at):
            if elapsed >= moment:
                restart_at.discard(moment)
                redis_server.stop()
                time.sleep(1)
                redis_server.start()
                counts["redis_restarts"] += 1


def run(config: SoakConfig, *, server_url: str | None = None) -> SoakResult:
    """Start a private stack, soak it, audit it, tear it down."""
    random.seed(config.seed)
    workdir = Path(tempfile.mkdtemp(prefix="eq-soak-"))
    database_url = create_database(server_url or servers.postgres_url())
    redis_server = EmbeddedRedis(workdir / "redis", port=free_port())
    redis_server.start()
    stack = Stack(
        database_url=database_url,
        redis_url=redis_server.url,
        workdir=workdir / "stack",
        extra_env={"SANDBOX_LATENCY": "1.0", "EDITQUEUE_DEFAULT_DEADLINE_SECONDS": "600"},
    )
    started = time.monotonic()
    stop = threading.Event()
    counts: Counter[str] = Counter()
    try:
        stack.start(workers=config.workers)
        receiver = _Receiver()
        keys = _tenants(database_url, config.tenants)
        chaos = threading.Thread(
            target=_chaos, args=(stack, redis_server, config, stop, counts), daemon=True
        )
        chaos.start()
        submitted = _submit_all(stack, keys, receiver, config)
        statuses = _drain(submitted, config.drain_timeout, stop)
        chaos.join(timeout=30)
        engine = make_engine(database_url)
        # A delivery whose task died with a worker or the broker waits for its lease to
        # run out before the sweep hands it out again: wait for that, not a fixed pause.
        _drain_deliveries(engine, [job_id for _, job_id in submitted], config.drain_timeout)
        storage = open_storage(
            f"file://{stack.storage_dir}", public_url=stack.api_url, signing_key=b"unused"
        )
        with make_session_factory(engine)() as session, receiver.lock:
            violations = audit(
                session,
                storage,
                job_ids=[job_id for _, job_id in submitted],
                receipts=list(receiver.receipts),
            )
        engine.dispose()
        receiver.server.shutdown()
        return SoakResult(
            statuses=statuses,
            violations=violations,
            receipts=len(receiver.receipts),
            kills=counts["kills"],
            redis_restarts=counts["redis_restarts"],
            seconds=time.monotonic() - started,
            log_dir=workdir / "stack",
            job_ids=[job_id for _, job_id in submitted],
        )
    finally:
        stop.set()
        stack.stop()
        redis_server.stop()
        drop_database(database_url)


def _drain(submitted: list, timeout: float, stop: threading.Event) -> Counter[str]:
    deadline = time.monotonic() + timeout
    pending = {job_id: client for client, job_id in submitted}
    statuses: Counter[str] = Counter()
    while pending and time.monotonic() < deadline:
        for job_id, client in list(pending.items()):
            try:
                status = client.get(f"/v1/jobs/{job_id}").json()["status"]
            except (httpx.HTTPError, KeyError, ValueError):
                continue  # the API may be briefly unavailable during a restart
            if status in TERMINAL:
                statuses[status] += 1
                del pending[job_id]
        if len(pending) < 0.1 * len(submitted):
            stop.set()  # the tail drains without more chaos
        time.sleep(0.5)
    stop.set()
    statuses["not_terminal"] += len(pending)
    return +statuses


def _drain_deliveries(engine: Engine, job_ids: list[str], timeout: float) -> int:
    """Wait until no delivery of these jobs is pending; returns how many still are."""
    deadline = time.monotonic() + timeout
    query = (
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.job_id.in_(job_ids), Delivery.state == "pending")
    )
    while True:
        with engine.connect() as connection:
            pending = connection.execute(query).scalar_one()
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.5)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=20.0)
    parser.add_argument("--redis-restarts", type=int, default=2)
    parser.add_argument("--submit-seconds", type=float, default=120.0)
    parser.add_argument("--drain-timeout", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    config = SoakConfig(
        jobs=args.jobs,
        tenants=args.tenants,
        workers=args.workers,
        kill_every=args.kill_every,
        redis_restarts=args.redis_restarts,
        submit_seconds=args.submit_seconds,
        drain_timeout=args.drain_timeout,
        seed=args.seed,
    )
    result = run(config)
    print(result.summary())
    if not args.keep_logs:
        shutil.rmtree(result.log_dir.parent, ignore_errors=True)
    sys.exit(1 if result.violations or result.statuses.get("not_terminal") else 0)


if __name__ == "__main__":
    main()
