"""Batches over real HTTP: create, validation, live counts, cancel, idempotency, fan-out."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from sqlalchemy import event, func, select

from editqueue.jobs import batches
from editqueue.jobs.states import NewJob
from editqueue.models import Batch, Job, JobEvent
from tests.conftest import TERMINAL, TenantClient, data_url, png_bytes, wait_until

# An IP literal is vetted without DNS; nothing listens there, so jobs that run fail fast.
UNREACHABLE_IMAGE = "http://127.0.0.1:9/in.png"


def batch_body(count: int, **extra):
    return {
        "defaults": {"model": "seededit-3.0", "image": UNREACHABLE_IMAGE},
        "jobs": [{"prompt": f"edit {i}"} for i in range(count)],
        **extra,
    }


def post_batch(tenant: TenantClient, body, **headers) -> httpx.Response:
    return tenant.client.post("/v1/batches", json=body, headers=headers)


def test_a_thousand_jobs_in_one_call_then_cancel_them_all(tenant: TenantClient) -> None:
    response = post_batch(tenant, batch_body(1000, metadata={"campaign": "spring"}))
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["id"].startswith("bat_") and batch["object"] == "batch"
    assert response.headers["Location"] == f"/v1/batches/{batch['id']}"
    assert batch["counts"]["total"] == 1000 and batch["counts"]["queued"] == 1000
    assert batch["metadata"] == {"campaign": "spring"}
    assert len(set(batch["job_ids"])) == 1000

    canceled = tenant.client.post(f"/v1/batches/{batch['id']}/cancel")
    assert canceled.status_code == 200, canceled.text
    counts = canceled.json()["counts"]
    assert counts["total"] == 1000
    assert counts["queued"] == counts["running"] == 0
    assert counts["canceled"] > 0
    # The job ids come back in the order the jobs were sent.
    fetched = tenant.client.get(f"/v1/batches/{batch['id']}").json()
    assert fetched["job_ids"] == batch["job_ids"]
    first = tenant.client.get(f"/v1/jobs/{batch['job_ids'][0]}").json()
    last = tenant.client.get(f"/v1/jobs/{batch['job_ids'][-1]}").json()
    assert (first["prompt"], last["prompt"]) == ("edit 0", "edit 999")
    assert first["batch_id"] == batch["id"]


def test_batch_jobs_run_to_completion_with_live_counts(tenant: TenantClient) -> None:
    image = data_url(png_bytes(seed=2))
    body = {
        "defaults": {"model": "seededit-3.0", "image": image, "metadata": {"run": "r1"}},
        "jobs": [{"prompt": f"snow {i}", "metadata": {"i": str(i)}} for i in range(5)],
    }
    batch = post_batch(tenant, body).json()
    done = wait_until(
        lambda: (
            b
            if (b := tenant.client.get(f"/v1/batches/{batch['id']}").json())["counts"]["succeeded"]
            == 5
            else None
        ),
        timeout=60,
    )
    assert done["counts"] == {
        "total": 5,
        "queued": 0,
        "running": 0,
        "succeeded": 5,
        "failed": 0,
        "canceled": 0,
    }
    listed = tenant.client.get("/v1/jobs", params={"batch_id": batch["id"]}).json()["data"]
    assert sorted(j["id"] for j in listed) == sorted(batch["job_ids"])
    job = next(j for j in listed if j["prompt"] == "snow 3")
    assert job["metadata"] == {"run": "r1", "i": "3"}
    assert job["inputs"][0]["sha256"]  # the data URL was stored at intake
    assert job["outputs"]


def test_validation_is_all_or_nothing_with_item_paths(tenant: TenantClient) -> None:
    body = batch_body(20)
    body["jobs"][3] = {"prompt": ""}
    body["jobs"][19] = {"prompt": "ok", "colour": "red"}
    body["jobs"][17] = {"prompt": "x" * 801}
    body["jobs"][18] = {"prompt": "ok", "model": "no-such-model"}
    # Shape errors of every item come first…
    response = post_batch(tenant, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invalid_request"
    assert {e["field"] for e in problem["errors"]} == {"jobs[3].prompt", "jobs[19].colour"}
    # …then, once every item is well-formed, catalog errors of every item.
    body["jobs"][3] = body["jobs"][19] = {"prompt": "ok"}
    response = post_batch(tenant, body)
    assert response.status_code == 422, response.text
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"jobs[17].prompt", "jobs[18].model"}
    assert "2 of 20 jobs" in response.json()["detail"]
    assert tenant.client.get("/v1/jobs").json()["data"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"jobs": []}, "jobs"),
        ({"jobs": [{"prompt": "a"}] * 1001}, "jobs"),
        ({"jobs": [{"prompt": "a"}], "defaults": {"modle": "x"}}, "defaults.modle"),
        ({"jobs": [{"prompt": "a"}], "extra": 1}, "extra"),
        ({"jobs": "nope"}, "jobs"),
        ({"jobs": [{"prompt": "a", "image": "data:image/png;base64,AAAA"}]}, None),
    ],
)
def test_bad_envelopes_are_422(tenant: TenantClient, body, field) -> None:
    body.setdefault("defaults", {"model": "seededit-3.0"})
    response = post_batch(tenant, body)
    assert response.status_code == 422, response.text
    if field:
        assert field in {e["field"] for e in response.json()["errors"]}


def test_not_json_is_400_or_415(tenant: TenantClient) -> None:
    raw = tenant.client.post(
        "/v1/batches", content=b"{", headers={"content-type": "application/json"}
    )
    assert raw.status_code == 400
    form = tenant.client.post("/v1/batches", data={"jobs": "x"})
    assert form.status_code == 415


def test_other_tenants_batch_is_404(tenant: TenantClient, other_tenant: TenantClient) -> None:
    batch = post_batch(tenant, batch_body(1)).json()
    assert other_tenant.client.get(f"/v1/batches/{batch['id']}").status_code == 404
    assert other_tenant.client.post(f"/v1/batches/{batch['id']}/cancel").status_code == 404
    assert tenant.client.get("/v1/batches/bat_nope").status_code == 404
    tenant.client.post(f"/v1/batches/{batch['id']}/cancel")


def test_cancel_gives_each_job_its_terminal_event(tenant: TenantClient) -> None:
    batch = post_batch(tenant, batch_body(4)).json()
    tenant.client.post(f"/v1/batches/{batch['id']}/cancel").raise_for_status()
    for job_id in batch["job_ids"]:
        job = tenant.client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] in TERMINAL
        terminal = [e for e in tenant.events(job_id) if e["type"] == f"job.{job['status']}"]
        assert len(terminal) == 1
    # A second cancel has nothing left to do and still answers with the batch.
    again = tenant.client.post(f"/v1/batches/{batch['id']}/cancel")
    assert again.status_code == 200 and again.json()["counts"]["queued"] == 0


def test_idempotent_replay_and_reuse(tenant: TenantClient) -> None:
    body = batch_body(2)
    first = post_batch(tenant, body, **{"Idempotency-Key": "bk-1"})
    assert first.status_code == 202
    replay = post_batch(tenant, body, **{"Idempotency-Key": "bk-1"})
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert replay.json()["job_ids"] == first.json()["job_ids"]
    reused = post_batch(tenant, batch_body(3), **{"Idempotency-Key": "bk-1"})
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    tenant.client.post(f"/v1/batches/{first.json()['id']}/cancel")


def test_idempotent_replay_ignores_key_order_and_whitespace(tenant: TenantClient) -> None:
    body = batch_body(3, metadata={"x": "1", "y": "2"})
    body["jobs"][1] = {"prompt": "edit 1", "seed": 5, "metadata": {"k": "v", "j": "w"}}
    headers = {"Idempotency-Key": "bk-canon", "Content-Type": "application/json"}
    first = tenant.client.post("/v1/batches", content=json.dumps(body), headers=headers)
    assert first.status_code == 202, first.text
    reordered = {
        "metadata": {"y": "2", "x": "1"},
        "jobs": [dict(reversed(list(job.items()))) for job in body["jobs"]],
        "defaults": dict(reversed(list(body["defaults"].items()))),
    }
    text = json.dumps(reordered, indent="\t", separators=(" ,", " : "))
    replay = tenant.client.post("/v1/batches", content=text, headers=headers)
    assert replay.status_code == 200, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert replay.json()["job_ids"] == first.json()["job_ids"]
    # The job order is part of the request: swapping two jobs is another batch.
    body["jobs"][0], body["jobs"][2] = body["jobs"][2], body["jobs"][0]
    reused = tenant.client.post("/v1/batches", content=json.dumps(body), headers=headers)
    assert reused.status_code == 422, reused.text
    assert reused.json()["code"] == "idempotency_key_reused"
    tenant.client.post(f"/v1/batches/{first.json()['id']}/cancel")


def _post_concurrently(count: int, send) -> list[httpx.Response]:
    barrier = threading.Barrier(count)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        response = send()
        with lock:
            results.append(response)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_duplicate_batches_make_one(tenant: TenantClient, sessions) -> None:
    body = batch_body(3)
    results = _post_concurrently(
        8,
        lambda: httpx.post(
            f"{tenant.client.base_url}/v1/batches",
            json=body,
            headers={"Authorization": f"Bearer {tenant.key}", "Idempotency-Key": "race-b"},
            timeout=30,
        ),
    )
    assert sorted(r.status_code for r in results) == [200] * 7 + [202], [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    with sessions() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Batch).where(Batch.tenant_id == tenant.id)
            )
            == 1
        )
        assert (
            session.scalar(select(func.count()).select_from(Job).where(Job.tenant_id == tenant.id))
            == 3
        )
    tenant.client.post(f"/v1/batches/{results[0].json()['id']}/cancel")


def test_concurrent_duplicate_jobs_make_one(tenant: TenantClient, sessions) -> None:
    body = {"model": "seededit-3.0", "prompt": "race", "image": UNREACHABLE_IMAGE}
    results = _post_concurrently(
        8,
        lambda: httpx.post(
            f"{tenant.client.base_url}/v1/jobs",
            json=body,
            headers={"Authorization": f"Bearer {tenant.key}", "Idempotency-Key": "race-j"},
            timeout=30,
        ),
    )
    assert sorted(r.status_code for r in results) == [200] * 7 + [202], [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    with sessions() as session:
        assert (
            session.scalar(select(func.count()).select_from(Job).where(Job.tenant_id == tenant.id))
            == 1
        )


def test_insert_is_set_based(tenant: TenantClient, sessions) -> None:
    """A batch costs the same few statements whatever its size (no per-row round trips)."""

    def statements_for(count: int) -> int:
        new_jobs = [
            NewJob(
                model="seededit-3.0",
                prompt=f"p{i}",
                params={},
                inputs=[{"source": "url", "url": UNREACHABLE_IMAGE, "key": None}],
                provider_pin=None,
                provider_options={},
                webhook_url=None,
                webhook_events=[],
                metadata={},
                deadline_seconds=60,
            )
            for i in range(count)
        ]
        executed: list[str] = []
        with sessions() as session:
            engine = session.get_bind()

            def count_statement(*_args) -> None:
                executed.append("x")

            event.listen(engine, "before_cursor_execute", count_statement)
            try:
                created = batches.insert_batch(session, tenant.id, new_jobs)
            finally:
                event.remove(engine, "before_cursor_execute", count_statement)
            assert (
                session.scalar(
                    select(func.count())
                    .select_from(JobEvent)
                    .where(JobEvent.job_id.in_(created.job_ids))
                )
                == count
            )
            session.rollback()
        return len(executed)

    small, large = statements_for(2), statements_for(900)
    assert large == small <= 8


def test_batches_are_in_the_openapi_document(stack) -> None:
    spec = httpx.get(f"{stack.api_url}/openapi.json").json()
    assert {"post"} <= set(spec["paths"]["/v1/batches"])
    assert "get" in spec["paths"]["/v1/batches/{batch_id}"]
    assert "post" in spec["paths"]["/v1/batches/{batch_id}/cancel"]
    assert "Batch" in spec["components"]["schemas"]
