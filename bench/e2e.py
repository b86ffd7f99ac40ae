"""End-to-end throughput with a zero-latency vendor, against a bare Celery chain.

    python -m bench.e2e --jobs 600 --runs 3

Ours: jobs go in through `POST /v1/batches` (≤1,000 per call) pinned to Ark with
SANDBOX_ARK_LATENCY=0, and count as done when their `job.succeeded` webhook reaches a
local receiver; throughput = jobs / (first submit → last webhook). Baseline: the same
number of 3-hop no-op chains (dispatch doorbell → submit → deliver, the hops on a job's
critical path) on the same Redis, worker command line and settings.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from collections import Counter
from dataclasses import dataclass
from types import ModuleType

import httpx
from celery import Celery

from bench import infra, procs
from bench.machine import tree_cpu
from bench.receiver import Receiver
from bench.report import Report
from bench.stats import median, ratio
from tests.conftest import png_bytes
from tests.stack import Stack

CHAIN_HOPS = 3


@dataclass(frozen=True)
class E2EConfig:
    """How many jobs per run, how many runs and workers."""

    jobs: int = 600
    runs: int = 3
    workers: int = 1
    timeout: float = 300.0


def _submit(stack: Stack, key: str, image: str, hook: str, count: int) -> None:
    """Submit `count` Ark jobs in batch calls of up to 1,000."""
    client = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=120)
    job = {"model": "seededit-3.0", "prompt": "bench", "image": image, "provider": "ark"}
    job["webhook_url"] = hook
    for start in range(0, count, 1000):
        size = min(1000, count - start)
        response = client.post(f"{stack.api_url}/v1/batches", json={"jobs": [job] * size})
        response.raise_for_status()
    client.close()


def _cpu(stack: Stack) -> Counter[str]:
    """CPU seconds used so far by each role of the stack (all workers together)."""
    used: Counter[str] = Counter()
    for name, process in stack.procs.items():
        used[name.split("-")[0]] += tree_cpu(process.pid)
    return used


def _ours(stack: Stack, config: E2EConfig) -> tuple[list[float], Counter[str], Counter[str]]:
    """Jobs/s of each run; task messages the workers received and CPU ms, per job."""
    key = infra.api_keys(stack.database_url, 1)[0]
    image = infra.sandbox_image(stack, png_bytes((256, 256)))
    receiver = Receiver()
    rates = []
    try:
        _submit(stack, key, image, receiver.url, 20)  # warm-up: connections, imports, caches
        if not receiver.wait_for(20, config.timeout):
            raise RuntimeError(f"warm-up jobs did not finish:\n{stack.log('worker')}")
        before = _task_counts(stack)
        cpu_before = _cpu(stack)
        for run in range(config.runs):
            expected = 20 + (run + 1) * config.jobs
            started = time.time()
            _submit(stack, key, image, receiver.url, config.jobs)
            if not receiver.wait_for(expected, config.timeout):
                raise RuntimeError(f"only {len(receiver.arrivals)} of {expected} webhooks came")
            last = max(receiver.arrivals.values())
            rates.append(config.jobs / (last - started))
        after = _task_counts(stack)
        cpu = _cpu(stack)
        cpu.subtract(cpu_before)
    finally:
        receiver.close()
    jobs = config.jobs * config.runs
    per_job = Counter({name: n / jobs for name, n in (after - before).items()})
    cpu_ms = Counter({role: 1000 * seconds / jobs for role, seconds in cpu.items()})
    return rates, per_job, cpu_ms


def _task_counts(stack: Stack) -> Counter[str]:
    """Task messages taken so far by every worker, by task name (Celery's remote control:
    each worker's `stats()` totals)."""
    app = Celery("bench-inspect", broker=stack.env["REDIS_URL"])
    try:
        replies = app.control.inspect(timeout=3.0).stats() or {}
    finally:
        app.close()
    workers = [name for name in stack.procs if name.startswith("worker")]
    if len(replies) != len(workers):
        raise RuntimeError(f"{len(replies)} of {len(workers)} workers answered stats()")
    counts: Counter[str] = Counter()
    for reply in replies.values():
        counts.update(reply.get("total", {}))
    return counts


def _bare(stack: Stack, config: E2EConfig) -> list[float]:
    """Chains per second of each run, on bare workers started like ours."""
    os.environ.update({name: stack.env[name] for name in ("DATABASE_URL", "REDIS_URL")})
    bare: ModuleType = importlib.import_module("bench.bare_celery")
    workers = [
        procs.spawn(bare.argv(8), stack.env, stack.workdir / f"bare-worker-{i}.log")
        for i in range(config.workers)
    ]
    rates = []
    try:
        _run_chains(bare, 20, config.timeout)  # warm-up
        for _ in range(config.runs):
            rates.append(_run_chains(bare, config.jobs, config.timeout))
    finally:
        for worker in workers:
            procs.stop(worker)
    return rates


def _run_chains(bare: ModuleType, count: int, timeout: float) -> float:
    target = bare.done() + count
    started = time.time()
    for _ in range(count):
        bare.publish(0, CHAIN_HOPS)
    deadline = time.monotonic() + timeout
    while bare.done() < target:
        if time.monotonic() > deadline:
            raise RuntimeError("bare chains did not finish")
        time.sleep(0.01)
    return count / (time.time() - started)


def run(config: E2EConfig) -> Report:
    """Measure ours on a full stack, stop it, then the bare chains on the same Redis."""
    report = Report("End-to-end throughput, zero-latency vendor (jobs per second)")
    extra = {"SANDBOX_ARK_LATENCY": "0"}
    with infra.private_servers() as where:
        with infra.running_stack(where, workers=config.workers, extra_env=extra) as stack:
            ours, per_job, cpu_ms = _ours(stack, config)
        bare = _bare(stack, config)
    report.header = ["pipeline", "median jobs/s", "runs", "vs bare chain"]
    report.rows = [
        [
            f"bare Celery chain, {CHAIN_HOPS} no-op hops (baseline)",
            f"{median(bare):.0f}",
            _runs(bare),
            "100 %",
        ],
        [
            "editqueue: batch submit → Ark → stored → webhook received",
            f"{median(ours):.0f}",
            _runs(ours),
            ratio(median(ours), median(bare)),
        ],
    ]
    share = median(ours) / median(bare) if median(bare) else 0.0
    report.target("≥ 40 % of the bare chain", share >= 0.4, f"{100 * share:.0f} %")
    messages = ", ".join(
        f"{name.removeprefix('editqueue.')} {n:.2f}" for name, n in per_job.most_common()
    )
    report.notes.append(
        f"{config.jobs} jobs per run, {config.runs} runs, {config.workers} worker process(es) "
        f"× 8 threads. Task messages our worker received per job: {messages} "
        f"(total {sum(per_job.values()):.2f}; beat ticks included)."
    )
    spent = ", ".join(f"{role} {ms:.1f}" for role, ms in cpu_ms.most_common())
    report.notes.append(
        f"CPU ms per job by process (2 cores = 2,000 ms/s available): {spent} "
        "(PostgreSQL and Redis not included)."
    )
    return report


def _runs(values: list[float]) -> str:
    return " / ".join(f"{v:.0f}" for v in values)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    print(run(E2EConfig(args.jobs, args.runs, args.workers)).markdown())


if __name__ == "__main__":
    main()
