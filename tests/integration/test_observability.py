"""Metrics at /metrics and structured, secret-free logs."""

from __future__ import annotations

import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TenantClient, data_url, png_bytes, wait_until
from tests.stack import Stack


def _samples(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{stack.api_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_cover_jobs_queues_vendors_webhooks_and_outbox(
    stack: Stack, tenant: TenantClient
) -> None:
    job = tenant.create_job(model="seededit-3.0", prompt="metrics", image=data_url(png_bytes()))
    assert tenant.wait_job(job["id"])["status"] == "succeeded"
    calls = ("provider", "ark"), ("op", "submit"), ("outcome", "succeeded")
    call_sample = ("editqueue_provider_calls_total", tuple(sorted(calls)))
    # Workers flush their vendor-call counts within a second (ProviderStats), which may be
    # after the job's end.
    samples = wait_until(lambda: (found := _samples(stack)).get(call_sample) and found, 10)
    names = {name for name, _ in samples}
    assert samples[("editqueue_jobs", (("status", "succeeded"),))] >= 1
    assert samples[call_sample] >= 1
    assert ("editqueue_queue_depth", (("queue", "jobs"),)) in samples
    assert {
        "editqueue_outbox_backlog",
        "editqueue_outbox_lag_seconds",
        "editqueue_queued_oldest_age_seconds",
        "editqueue_provider_latency_seconds_bucket",
    } <= names


def test_worker_logs_are_json_with_job_context_and_no_secrets(
    stack: Stack, tenant: TenantClient
) -> None:
    job = tenant.create_job(model="seededit-3.0", prompt="logs", image=data_url(png_bytes()))
    assert tenant.wait_job(job["id"])["status"] == "succeeded"

    def job_lines() -> list[dict]:
        lines = []
        for line in stack.log("worker").splitlines() + stack.log("worker").splitlines():
            if job["id"] in line and line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    lines = wait_until(job_lines)
    assert any(
        entry.get("job_id") == job["id"]
        and entry.get("tenant") == tenant.id
        and entry.get("provider") == "ark"
        for entry in lines
    ), lines
    # Events say a stable key and carry their values as fields (docs/operations.md).
    succeeded = wait_until(lambda: [e for e in job_lines() if e["message"] == "job.succeeded"])[0]
    assert (succeeded["provider"], succeeded["outputs"]) == ("ark", 1), succeeded
    everything = stack.log("worker") + stack.log("api") + stack.log("beat")
    assert tenant.key not in everything
    assert tenant.secret not in everything
