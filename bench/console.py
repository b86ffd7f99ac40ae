"""How fast the console's jobs page answers with 100,000 jobs in one tenant.

    python -m bench.console [--jobs 100000] [--runs 30]

Seeds a throwaway database with one `INSERT … SELECT generate_series` (a fifth of the jobs
succeeded with an output, the rest spread over the other statuses), signs in through the
console's form, and times `GET /console/jobs` in-process (Flask's test client: the page's
own cost, no network): the newest page, an older page by cursor, a status filter and a
metadata filter. Prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

from sqlalchemy import text

from bench.infra import api_keys, private_servers
from bench.machine import facts
from editqueue.db import make_engine

_SEED = text(
    """
    WITH p AS (SELECT CAST(:tenant AS text) AS t, CAST(:n AS int) AS n)
    INSERT INTO jobs (id, tenant_id, status, model, prompt, params, provider_options, inputs,
                      outputs, attempts, metadata, webhook_events, poll_count, deadline_at,
                      created_at, provider, started_at, completed_at)
    SELECT 'job_0000' || upper(lpad(to_hex(i), 22, '0')), p.t,
           (ARRAY['succeeded','failed','canceled','queued','running'])[1 + i % 5],
           'seededit-3.0', 'make it snowy #' || i, '{}', '{}',
           jsonb_build_array(jsonb_build_object('key', p.t || '/seed/in/' || i || '.png',
               'sha256', 'x', 'content_type', 'image/png', 'width', 320, 'height', 240,
               'bytes', 1000)),
           CASE WHEN i % 5 = 0 THEN jsonb_build_array(jsonb_build_object('index', 0,
               'key', p.t || '/seed/out/' || i || '.jpg', 'content_type', 'image/jpeg',
               'width', 1024, 'height', 768, 'bytes', 50000, 'sha256', 'y'))
               ELSE '[]'::jsonb END,
           1, jsonb_build_object('campaign', 'c' || (i % 50)), '[]', 0,
           now() + interval '1 hour', now() - make_interval(secs => p.n - i),
           'ark', now() - make_interval(secs => p.n - i), now() - make_interval(secs => p.n - i)
      FROM p, generate_series(1, p.n) AS i
    """
)


def _tenant_of(database_url: str, key: str) -> str:
    from editqueue.tenants import key_digest

    engine = make_engine(database_url, pool_size=1)
    with engine.connect() as conn:
        tenant = conn.execute(
            text("SELECT tenant_id FROM api_keys WHERE key_hash = :h"), {"h": key_digest(key)}
        ).scalar_one()
    engine.dispose()
    return tenant


def _seed(database_url: str, tenant: str, count: int) -> float:
    engine = make_engine(database_url, pool_size=1)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(_SEED, {"tenant": tenant, "n": count})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE jobs"))
    engine.dispose()
    return time.perf_counter() - started


def _time(client, url: str, runs: int) -> tuple[float, float, int]:
    client.get(url)  # warm-up (template compilation, connection)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    rows = response.text.count('class="job-row"') or response.text.count("data-vendor=")
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with private_servers() as servers:
        key = api_keys(servers.database_url, 1)[0]
        tenant = _tenant_of(servers.database_url, key)
        seconds = _seed(servers.database_url, tenant, args.jobs)
        os.environ.update(DATABASE_URL=servers.database_url, REDIS_URL=servers.redis_url)
        from api.app import create_app
        from editqueue.config import load_settings

        app = create_app(load_settings(storage_url=f"file://{servers.workdir}/storage"))
        client = app.test_client()
        form = client.get("/console/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token is not None
        client.post("/console/login", data={"api_key": key, "csrf_token": token.group(1)})
        older = "job_0000" + format(args.jobs // 2, "X").rjust(22, "0")
        import base64

        cursor = base64.urlsafe_b64encode(older.encode()).decode().rstrip("=")
        cases = [
            ("newest page", "/console/jobs"),
            ("an older page (cursor, mid-history)", f"/console/jobs?cursor={cursor}"),
            ("status=failed", "/console/jobs?status=failed"),
            ("metadata campaign=c7", "/console/jobs?metadata=campaign%3Dc7"),
            ("status=running + metadata", "/console/jobs?status=running&metadata=campaign%3Dc9"),
            ("(vendors & health: the last hour's aggregates)", "/console/vendors"),
        ]
        print(facts())
        print(f"\nseeded {args.jobs:,} jobs in one tenant in {seconds:.1f} s\n")
        print("| request | rows | median ms | p95 ms |")
        print("|---|---|---|---|")
        for label, url in cases:
            median, p95, rows = _time(client, url, args.runs)
            print(f"| `GET {url.split('?')[0]}` {label} | {rows} | {median:.0f} | {p95:.0f} |")


if __name__ == "__main__":
    main()
