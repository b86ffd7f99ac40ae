"""Submit throughput: `POST /v1/jobs` and `POST /v1/batches` against a bare Flask+INSERT.

    python -m bench.submit --runs 5 --seconds 5

The stack starts whole, then its worker and beat are stopped so the API and the baseline
compete with nothing but the load generator (jobs simply stay queued). Runs of ours and
the baseline alternate so a change in background load hits both.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from bench import bare_flask, infra, loadgen, procs
from bench.report import Report
from bench.stats import median, ratio
from editqueue.standalone.ports import free_port
from editqueue.standalone.supervisor import wait_for_http
from tests.conftest import png_bytes
from tests.stack import Stack

INLINE_BATCH = 1000  # jobs in the inline-image batch, timed alone after each run


@dataclass(frozen=True)
class SubmitConfig:
    """How long and how hard to push."""

    runs: int = 5
    seconds: float = 5.0
    batch_size: int = 1000
    processes: int = 2
    threads: int = 8


def _job(image: str, index: int) -> dict:
    return {"model": "seededit-3.0", "prompt": f"bench edit {index}", "image": image}


def _quiet_stack(stack: Stack) -> None:
    """Stop the worker and beat: this benchmark measures acceptance only."""
    stack.kill_worker()
    procs.stop(stack.procs.pop("beat"))


def _start_baseline(database_url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text(bare_flask.TABLE_DDL))
    engine.dispose()
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url}
    process = procs.spawn(bare_flask.argv(f"127.0.0.1:{port}"), env, workdir / "bare-flask.log")
    url = f"http://127.0.0.1:{port}/jobs"
    wait_for_http(f"http://127.0.0.1:{port}/", timeout=60)  # a 404 means it is up
    return process, url


def run(config: SubmitConfig) -> Report:
    """Start everything, alternate the three loads `runs` times, report the medians."""
    ours_single: list[float] = []
    ours_batch: list[float] = []
    bare: list[float] = []
    inline_seconds: list[float] = []
    with infra.private_servers() as where, infra.running_stack(where) as stack:
        image = infra.sandbox_image(stack, png_bytes((320, 240)))
        key = infra.api_keys(where.database_url, 1)[0]
        _quiet_stack(stack)
        baseline, bare_url = _start_baseline(where.database_url, where.workdir)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        single = json.dumps(_job(image, 0)).encode()
        batch = json.dumps({"jobs": [_job(image, i) for i in range(config.batch_size)]}).encode()
        inline = json.dumps({"jobs": [_job(_data_url(), i) for i in range(INLINE_BATCH)]}).encode()
        bare_headers = {"Content-Type": "application/json"}
        shape = {"seconds": config.seconds, "processes": config.processes}
        try:
            # One untimed round first: both servers open their pools and prepare their
            # statements, which otherwise falls on the first measured run of each.
            for url, sent in ((f"{stack.api_url}/v1/jobs", headers), (bare_url, bare_headers)):
                warm = loadgen.Load(
                    url, single, sent, 2.0, processes=config.processes, threads=config.threads
                )
                loadgen.run(warm)
            for _ in range(config.runs):
                result = loadgen.run(
                    loadgen.Load(
                        f"{stack.api_url}/v1/jobs", single, headers, **shape, threads=config.threads
                    )
                )
                ours_single.append(result.rate(202))
                result = loadgen.run(
                    loadgen.Load(bare_url, single, bare_headers, **shape, threads=config.threads)
                )
                bare.append(result.rate(202))
                # Two calls in flight per process: each carries 1,000 jobs.
                result = loadgen.run(
                    loadgen.Load(f"{stack.api_url}/v1/batches", batch, headers, **shape, threads=2)
                )
                ours_batch.append(result.rate(202) * config.batch_size)
                inline_seconds.append(_timed_post(f"{stack.api_url}/v1/batches", inline, headers))
        finally:
            procs.stop(baseline)
    return _report(config, ours_single, ours_batch, bare, inline_seconds)


def _data_url() -> str:
    """A small PNG (64 × 64) as a data URL: what a client sends inline."""
    return "data:image/png;base64," + base64.b64encode(png_bytes((64, 64))).decode()


def _timed_post(url: str, body: bytes, headers: dict[str, str]) -> float:
    """Seconds from sending one request to its 202 (alone on the server)."""
    with httpx.Client(headers=headers, timeout=120) as client:
        started = time.perf_counter()
        response = client.post(url, content=body)
        elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def _report(
    config: SubmitConfig,
    single: list[float],
    batch: list[float],
    bare: list[float],
    inline: list[float],
) -> Report:
    report = Report("Submit throughput (jobs accepted per second)")
    report.header = ["load", "median jobs/s", "runs", "vs bare Flask+INSERT"]
    report.rows = [
        ["bare Flask + one INSERT (baseline)", f"{median(bare):.0f}", _runs(bare), "100 %"],
        [
            "`POST /v1/jobs`",
            f"{median(single):.0f}",
            _runs(single),
            ratio(median(single), median(bare)),
        ],
        [
            f"`POST /v1/batches` ({config.batch_size} jobs/call)",
            f"{median(batch):.0f}",
            _runs(batch),
            ratio(median(batch), median(bare)),
        ],
        [
            f"one `POST /v1/batches` of {INLINE_BATCH} inline 64×64 PNGs, seconds to 202",
            f"{median(inline):.2f} s",
            " / ".join(f"{v:.2f}" for v in inline),
            "—",
        ],
    ]
    report.target("batch ≥ 10,000 jobs/s", median(batch) >= 10_000, f"{median(batch):.0f} jobs/s")
    report.target(
        f"{INLINE_BATCH} inline PNGs accepted in < 1 s",
        median(inline) < 1.0,
        f"{median(inline):.2f} s",
    )
    # Each run of ours is paired with the baseline's run right after it: the machine's speed
    # drifts by tens of percent within minutes here, and a pair's ratio cancels the drift.
    shares = [ours / base for ours, base in zip(single, bare, strict=True) if base]
    share = median(shares)
    report.target(
        "single ≥ 60 % of baseline",
        share >= 0.6,
        f"{100 * share:.0f} %, the median of each run's ratio to the baseline run after it "
        f"({' / '.join(f'{100 * s:.0f}' for s in shares)})",
    )
    report.notes.append(
        f"{config.processes} load processes × {config.threads} keep-alive connections "
        f"(batches: × 2), {config.seconds:g} s windows after 1 s warm-up, {config.runs} "
        "alternating runs after an untimed round of both single loads; both servers: "
        "gunicorn 2 gevent workers × 1,000 connections."
    )
    return report


def _runs(values: list[float]) -> str:
    return " / ".join(f"{v:.0f}" for v in values)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    config = SubmitConfig(args.runs, args.seconds, args.batch_size, args.processes, args.threads)
    print(run(config).markdown())


if __name__ == "__main__":
    main()
