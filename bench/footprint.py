"""What one job costs the shared parts: SQL statements, rows and bytes written, Redis calls.

    python -m bench.footprint --jobs 200

A short end-to-end run (batch submit → Ark at zero latency → stored → webhook received,
as bench/e2e.py) on a private database and Redis. Counted over the run, divided by jobs:

- SQL statements, by kind, from the server log: the private database alone is set to
  `log_statement = 'all'` (PostgreSQL's log prefix names the database, so other users of the
  server are left out); transactions from pg_stat_database (commits + rollbacks);
- rows inserted/updated/deleted per table (pg_stat_user_tables) and the growth of each
  table with its indexes and TOAST (pg_total_relation_size), i.e. bytes kept per job;
- Redis commands (INFO commandstats of the private Redis: the broker, vendor limits,
  rate limits, doorbells), which is everything the shared Redis serves.

Beat's ticks run during the window too and are counted: they are part of the cost.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import psycopg
import redis

from bench import infra
from bench.e2e import _submit
from bench.receiver import Receiver
from bench.report import Report
from tests.conftest import png_bytes

SERVER_LOG = Path("/var/log/postgresql/postgresql-15-main.log")
_STATEMENT = re.compile(r"@(\S+) LOG:  (?:statement|execute [^:]*):\s*([\w;]*)")
TABLES = ("jobs", "job_events", "deliveries", "delivery_attempts", "outbox", "batches")


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _db_stats(url: str) -> dict[str, int]:
    with psycopg.connect(_libpq(url)) as conn:
        name = urlsplit(url).path.lstrip("/")
        stats: dict[str, int] = {}
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (name,),
        ).fetchone()
        stats["transactions"] = int(row[0]) if row else 0
        for table, ins, upd, dele in conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
        ):
            stats[f"{table} ins"], stats[f"{table} upd"], stats[f"{table} del"] = ins, upd, dele
        for table in TABLES:
            size = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()
            stats[f"{table} bytes"] = int(size[0]) if size else 0
    return stats


def _backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to this database."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_libpq(url)) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        ]
    found = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        found[pid] = times.user + times.system
    return found


def _redis_cpu(url: str) -> float:
    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _redis_calls(url: str) -> Counter[str]:
    info = redis.Redis.from_url(url).info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()})


def _log_offset() -> int:
    return SERVER_LOG.stat().st_size if SERVER_LOG.exists() else 0


def _statements(since: int, database: str, until: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    if not SERVER_LOG.exists():
        return counts
    with SERVER_LOG.open("rb") as log:
        log.seek(since)
        lines = log.read(until - since).decode(errors="replace").splitlines()
    for index, line in enumerate(lines):
        match = _STATEMENT.search(line)
        if match and match.group(1) == database:
            # A statement that starts on the next line (text() SQL): its first word there.
            word = (
                match.group(2) or next(iter(lines[index + 1].split()), "?")
                if index + 1 < len(lines)
                else match.group(2)
            )
            # SQLAlchemy's pool pre-ping is the empty statement ";".
            counts["; (pre-ping)" if word == ";" else (word or "?").upper()] += 1
    return counts


def _snapshot(database_url: str, redis_url: str) -> dict[str, Any]:
    return {
        "db": _db_stats(database_url),
        "redis": _redis_calls(redis_url),
        "pg_cpu": _backend_cpu(database_url),
        "redis_cpu": _redis_cpu(redis_url),
        "offset": _log_offset(),
        "at": time.monotonic(),
    }


def _delta(a: dict[str, Any], b: dict[str, Any], database: str) -> Counter[str]:
    """Everything counted between two snapshots, as one flat counter."""
    found: Counter[str] = Counter()
    for key, value in b["db"].items():
        found[f"db:{key}"] = value - a["db"].get(key, 0)
    for key, value in b["redis"].items():
        if key != "info":
            found[f"redis:{key}"] = value - a["redis"].get(key, 0)
    # Backends that lived through the window; ones opened during it count whole.
    found["cpu:pg"] = sum(v - a["pg_cpu"].get(pid, 0.0) for pid, v in b["pg_cpu"].items())
    found["cpu:redis"] = b["redis_cpu"] - a["redis_cpu"]
    for kind, n in _statements(a["offset"], database, b["offset"]).items():
        found[f"sql:{kind}"] = n
    found["seconds"] = b["at"] - a["at"]
    return found


def run(jobs: int, idle: float) -> Report:
    """An idle window (beat's ticks alone), then `jobs` jobs; per-job figures, net of ticks."""
    report = Report(f"Footprint per job ({jobs} jobs end to end, zero-latency vendor)")
    extra = {"SANDBOX_ARK_LATENCY": "0"}
    with infra.private_servers() as where:
        database = urlsplit(where.database_url).path.lstrip("/")
        with psycopg.connect(_libpq(where.database_url), autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE \"{database}\" SET log_statement = 'all'")
        with infra.running_stack(where, workers=1, extra_env=extra) as stack:
            key = infra.api_keys(stack.database_url, 1)[0]
            image = infra.sandbox_image(stack, png_bytes((256, 256)))
            receiver = Receiver()
            try:
                _submit(stack, key, image, receiver.url, 20)  # warm-up
                if not receiver.wait_for(20, 120):
                    raise RuntimeError("warm-up jobs did not finish")
                time.sleep(2)
                first = _snapshot(where.database_url, where.redis_url)
                time.sleep(idle)
                second = _snapshot(where.database_url, where.redis_url)
                _submit(stack, key, image, receiver.url, jobs)
                if not receiver.wait_for(20 + jobs, 600):
                    raise RuntimeError(f"only {len(receiver.arrivals) - 20} of {jobs} came")
                time.sleep(2)
                third = _snapshot(where.database_url, where.redis_url)
            finally:
                receiver.close()
    ticks = _delta(first, second, database)
    window = _delta(second, third, database)
    scale = window["seconds"] / ticks["seconds"]
    gross = Counter({k: v / jobs for k, v in window.items()})
    net = Counter({k: (window[k] - scale * ticks.get(k, 0)) / jobs for k in window})
    report.header = ["per job", "gross", f"net of beat's ticks ({idle:.0f} s idle window)"]

    def row(name: str, keys: list[str], fmt: str = "{:.1f}") -> None:
        report.rows.append(
            [name, fmt.format(sum(gross[k] for k in keys)), fmt.format(sum(net[k] for k in keys))]
        )

    sql = sorted((k for k in window if k.startswith("sql:")), key=lambda k: -window[k])
    row("SQL statements, all", sql)
    for key in sql:
        if gross[key] >= 0.05:
            row(f"  {key.removeprefix('sql:')}", [key])
    row("transactions (commits + rollbacks)", ["db:transactions"])
    for table in TABLES:
        row(f"`{table}` rows inserted", [f"db:{table} ins"], "{:.2f}")
        row(f"`{table}` rows updated", [f"db:{table} upd"], "{:.2f}")
    row(
        "bytes kept, all tables (heap + indexes + TOAST growth)",
        [f"db:{t} bytes" for t in TABLES],
        "{:,.0f}",
    )
    redis = sorted((k for k in window if k.startswith("redis:")), key=lambda k: -window[k])
    row("Redis commands, all", redis)
    for key in redis[:8]:
        row(f"  {key.removeprefix('redis:')}", [key], "{:.2f}")
    row("PostgreSQL backend CPU ms", ["cpu:pg"], "{:.4f}")
    row("Redis server CPU ms", ["cpu:redis"], "{:.4f}")
    # CPU rows are in seconds above; show milliseconds.
    for line in report.rows:
        if line[0].endswith("CPU ms"):
            line[1], line[2] = (f"{1000 * float(v):.1f}" for v in line[1:3])
    idle_tx = ticks["db:transactions"] / ticks["seconds"]
    idle_sql = sum(ticks[k] for k in ticks if k.startswith("sql:")) / ticks["seconds"]
    report.notes.append(
        f"{jobs} jobs in {window['seconds']:.1f} s ({jobs / window['seconds']:.1f} jobs/s) on 1 "
        f"worker × 8 threads; beat's ticks alone: {idle_tx:.1f} transactions/s, "
        f"{idle_sql:.1f} statements/s."
    )
    return report


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of beat alone")
    args = parser.parse_args()
    print(run(args.jobs, args.idle).markdown())


if __name__ == "__main__":
    main()
