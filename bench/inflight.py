"""Scale in flight: 10,000 KIE jobs at once with 30 s vendor latency and callbacks.

    python -m bench.inflight --jobs 10000 --latency 30 --workers 2

Shows that waiting on a vendor holds no worker slot (peak jobs in stage `wait` against
the workers' total concurrency and the broker messages they hold), the memory of the
workers and the API, vendor calls per job against 1 + ⌈latency / poll interval⌉, and the
throughput against two baselines: the same jobs through the same stack with a zero-latency
vendor, measured first in the same run (the target: a long-latency vendor costs waiting,
not throughput), and the bound of a worker-slot-per-job design, which could keep at most
`concurrency` jobs in flight (throughput concurrency / latency).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import threading
import time
from dataclasses import dataclass

import httpx

from bench import infra
from bench.receiver import Receiver
from bench.report import Report
from bench.sampler import Peaks, Sampler
from editqueue.jobs.pipeline import CALLBACK_POLL_FACTOR, poll_delay
from tests.conftest import png_bytes
from tests.stack import Stack

THREADS_PER_WORKER = 8  # tests.stack starts every worker with --concurrency 8
MIB = 2**20


@dataclass(frozen=True)
class InflightConfig:
    """Size of the run."""

    jobs: int = 10_000
    latency: float = 30.0
    workers: int = 2
    budget: float = 1500.0  # seconds to wait for the last webhook before reporting anyway
    baseline_jobs: int = 3000  # jobs of the zero-latency pass run first (0: skip it)


@dataclass
class Outcome:
    """What one run measured."""

    done: int
    seconds: float
    submit_seconds: float
    peaks: Peaks
    vendor_requests: dict[str, int]
    tasks_created: int


def _submit(stack: Stack, key: str, image: str, hook: str, count: int) -> None:
    client = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=300)
    job = {"model": "seedream-4.0-edit", "prompt": "bench", "image": image, "provider": "kie"}
    job["webhook_url"] = hook
    for start in range(0, count, 1000):
        size = min(1000, count - start)
        client.post(f"{stack.api_url}/v1/batches", json={"jobs": [job] * size}).raise_for_status()
    client.close()


def _measure(stack: Stack, config: InflightConfig) -> Outcome:
    key = infra.api_keys(stack.database_url, 1)[0]
    # Served by the bench itself: the sandbox's links expire after SANDBOX_URL_TTL.
    receiver = Receiver(image=png_bytes((256, 256)))
    image = receiver.image_url
    sampler = Sampler(stack)
    try:
        started = time.time()
        submitter = threading.Thread(
            target=_submit, args=(stack, key, image, receiver.url, config.jobs)
        )
        submitter.start()
        submitter.join()
        submit_seconds = time.time() - started
        receiver.wait_for(config.jobs, max(1.0, config.budget - submit_seconds))
        done = len(receiver.arrivals)
        last = max(receiver.arrivals.values(), default=time.time())
        peaks = sampler.stop()
        kie = stack.sandbox_stats()["kie"]
    finally:
        sampler.stop()
        receiver.close()
    return Outcome(
        done, last - started, submit_seconds, peaks, kie["requests"], kie["tasks_created"]
    )


def run(config: InflightConfig) -> Report:
    """Run the jobs through a stack with a zero-latency KIE, then a 30 s one, and report."""
    report = Report(f"Scale in flight: {config.jobs} jobs, {config.latency:g} s vendor latency")
    baseline = None
    if config.baseline_jobs:
        zero = dataclasses.replace(config, jobs=config.baseline_jobs, latency=0.0)
        baseline = _run_pass(zero)
    outcome = _run_pass(config)
    _write(report, config, outcome, baseline)
    return report


def _run_pass(config: InflightConfig) -> Outcome:
    """One stack, `config.jobs` KIE jobs at `config.latency`."""
    extra = {
        "SANDBOX_LATENCY": str(config.latency),
        "EDITQUEUE_TENANT_MAX_RUNNING": str(config.jobs),
        # A short window, as in production: submits beyond it wait in PostgreSQL, so the
        # polls and callbacks of jobs already at the vendor never queue behind them.
        "EDITQUEUE_DISPATCH_WINDOW": str(config.workers * 8 * 4),
        "EDITQUEUE_DEFAULT_DEADLINE_SECONDS": "3600",
        # The emulator keeps rendered results in memory until their links expire (~5 MB a
        # task); we download them at once, so a short lifetime bounds the sandbox's RAM.
        "SANDBOX_URL_TTL": "120",
    }
    with (
        infra.private_servers() as where,
        infra.running_stack(where, workers=config.workers, extra_env=extra) as stack,
    ):
        return _measure(stack, config)


def _write(
    report: Report, config: InflightConfig, outcome: Outcome, baseline: Outcome | None
) -> None:
    slots = config.workers * THREADS_PER_WORKER
    peaks = outcome.peaks
    # The first (shortest) poll interval with POLL_SCALE=1, for a vendor that calls back.
    interval = poll_delay(0, CALLBACK_POLL_FACTOR)
    bound = 1 + math.ceil(config.latency / interval)
    calls = sum(outcome.vendor_requests.values())
    per_job = calls / outcome.tasks_created if outcome.tasks_created else 0.0
    rate = outcome.done / outcome.seconds if outcome.seconds else 0.0
    worker_rss = peaks.rss["worker"] / MIB
    report.header = ["figure", "editqueue", "slot-per-job design (bound)"]
    zero_rate = baseline.done / baseline.seconds if baseline and baseline.seconds else 0.0
    report.rows = [
        ["jobs finished (webhook received)", f"{outcome.done} / {config.jobs}", "—"],
        [
            "same stack, zero-latency vendor (run first), jobs/s",
            f"{zero_rate:.1f} ({baseline.done} / {config.baseline_jobs} jobs)" if baseline else "—",
            "—",
        ],
        [
            "throughput, jobs/s (submit → last webhook)",
            f"{rate:.1f}",
            f"{slots / config.latency:.2f} ({slots} slots / {config.latency:g} s)",
        ],
        ["peak jobs waiting at the vendor (stage `wait`)", str(peaks.waiting), str(slots)],
        ["peak broker messages held by workers (`unacked`)", str(peaks.unacked), str(slots)],
        ["worker slots (processes × threads)", str(slots), str(slots)],
        ["peak RSS, all worker processes", f"{worker_rss:.0f} MiB", "—"],
        ["peak RSS, API (gunicorn master + workers)", f"{peaks.rss['api'] / MIB:.0f} MiB", "—"],
        [
            "peak RSS, beat / sandbox",
            f"{peaks.rss['beat'] / MIB:.0f} / {peaks.rss['sandbox'] / MIB:.0f} MiB",
            "—",
        ],
        [
            "vendor calls per job (create + polls)",
            f"{per_job:.2f} {outcome.vendor_requests}",
            f"≤ {bound} (1 + ⌈{config.latency:g} / {interval:g}⌉)",
        ],
        ["batch submission of all jobs", f"{outcome.submit_seconds:.1f} s", "—"],
    ]
    report.target(
        "no worker slot held while waiting",
        peaks.waiting > slots and peaks.unacked <= slots,
        f"{peaks.waiting} jobs waiting with {slots} slots, ≤ {peaks.unacked} messages held",
    )
    if baseline is not None:
        share = rate / zero_rate if zero_rate else 0.0
        report.target(
            "≥ 70 % of the zero-latency rate, every job finished",
            share >= 0.7 and outcome.done == config.jobs,
            f"{100 * share:.0f} % ({rate:.1f} vs {zero_rate:.1f} jobs/s), "
            f"{outcome.done} / {config.jobs} finished",
        )
    report.target("worker RSS < 1 GB", worker_rss * MIB < 1e9, f"{worker_rss:.0f} MiB")
    report.target(f"vendor calls per job ≤ {bound}", 0 < per_job <= bound, f"{per_job:.2f}")
    report.notes.append(
        f"KIE with callbacks, SANDBOX_LATENCY={config.latency:g}, {config.workers} worker "
        f"process(es) × {THREADS_PER_WORKER} threads, POLL_SCALE=1, sampled every second "
        f"({peaks.samples} samples); final job states {dict(_states(peaks))}."
    )


def _states(peaks: Peaks) -> dict[str, int]:
    return {
        f"{status}/{stage}" if stage else status: n for (status, stage), n in peaks.last.items()
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--budget", type=float, default=1500.0)
    parser.add_argument("--baseline-jobs", type=int, default=3000)
    args = parser.parse_args()
    config = InflightConfig(args.jobs, args.latency, args.workers, args.budget, args.baseline_jobs)
    print(run(config).markdown())


if __name__ == "__main__":
    main()
