"""Jobs end to end on the real stack: API → outbox → worker → sandbox vendor → storage → webhook."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
import standardwebhooks
from PIL import Image
from sqlalchemy import select

from editqueue.models import Job
from tests.conftest import Receiver, TenantClient, data_url, png_bytes, wait_until
from tests.stack import Stack


def _verify(tenant: TenantClient, request) -> dict:
    """Verify with the standardwebhooks library, not our own code."""
    return standardwebhooks.Webhook(tenant.secret).verify(request.body, request.headers)


def test_sync_vendor_job_is_stored_and_notified(
    stack: Stack, tenant: TenantClient, receiver: Receiver
) -> None:
    image = png_bytes((600, 400), seed=1)
    job = tenant.create_job(
        model="seededit-3.0",
        prompt="turn it into a winter scene",
        image=data_url(image),
        seed=42,
        webhook_url=receiver.url,
    )
    done = tenant.wait_job(job["id"])
    assert done["status"] == "succeeded", done
    assert done["provider"] == "ark"
    assert done["completed_at"] and done["started_at"]
    [output] = done["outputs"]
    assert output["content_type"] == "image/jpeg"
    assert (output["width"], output["height"]) == (1248, 832)  # Ark's adaptive table for 3:2
    stored = httpx.get(output["url"])
    assert stored.status_code == 200
    assert hashlib.sha256(stored.content).hexdigest() == output["sha256"]
    assert len(stored.content) == output["bytes"]
    assert output["sha256"] != hashlib.sha256(image).hexdigest()
    assert Image.open(io.BytesIO(stored.content)).size == (1248, 832)
    # The durable copy is ours, not the vendor's link.
    assert output["url"].startswith(stack.api_url)
    assert done["usage"]["attempts"][-1]["provider"] == "ark"

    [hook] = receiver.wait_for(1)
    payload = _verify(tenant, hook)
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["id"] == job["id"]
    assert payload["data"]["outputs"][0]["sha256"] == output["sha256"]
    types = [e["type"] for e in tenant.events(job["id"])]
    assert types[:3] == ["job.created", "job.started", "attempt.started"]
    assert "job.succeeded" in types
    deliveries = tenant.client.get(f"/v1/jobs/{job['id']}/deliveries").json()["data"]
    wait_until(
        lambda: (
            tenant.client.get(f"/v1/jobs/{job['id']}/deliveries").json()["data"][0]["state"]
            == "succeeded"
        )
    )
    assert deliveries[0]["event_type"] == "job.succeeded"


def test_callback_vendor_job_is_woken_by_the_callback(
    stack: Stack, tenant: TenantClient, receiver: Receiver
) -> None:
    job = tenant.create_job(
        model="seedream-4.0-edit",
        prompt="make it autumn",
        images=[data_url(png_bytes((400, 300), seed=2))],
        aspect_ratio="4:3",
        webhook_url=receiver.url,
    )
    done = tenant.wait_job(job["id"])
    assert done["status"] == "succeeded", done
    assert done["provider"] == "kie"
    assert done["usage"]["provider_task_id"]
    assert (done["outputs"][0]["width"], done["outputs"][0]["height"]) == (1024, 768)
    types = [e["type"] for e in tenant.events(job["id"])]
    assert "provider.task_created" in types
    # The callback may land just after a poll already finished the job; either way it arrives.
    wait_until(lambda: "callback.received" in [e["type"] for e in tenant.events(job["id"])])
    _verify(tenant, receiver.wait_for(1)[0])


def test_a_callback_reporting_an_internal_result_link_is_never_fetched(
    stack: Stack, tenant: TenantClient, sessions
) -> None:
    job = tenant.create_job(
        model="seedream-4.0-edit",
        prompt="forged callback",
        image=data_url(png_bytes()),
        provider="kie",
        provider_options={"_sandbox": {"fault": "callback_lost"}},
    )

    def task_and_token() -> tuple[str, str] | None:
        with sessions() as session:
            row = session.execute(
                select(Job.provider_task_id, Job.callback_token).where(Job.id == job["id"])
            ).one()
        return (row[0], row[1]) if row[0] else None

    wait_until(lambda: task_and_token() is not None)
    task_id, token = task_and_token() or ("", "")
    # Someone holding the callback URL claims the result lives at the metadata address.
    forged = {
        "code": 200,
        "msg": "success",
        "data": {
            "taskId": task_id,
            "state": "success",
            "resultJson": json.dumps({"resultUrls": ["http://169.254.169.254/latest/x.png"]}),
        },
    }
    answer = httpx.post(f"{stack.api_url}/v1/callbacks/kie/{token}", json=forged)
    assert answer.status_code == 200
    # The callback only woke the job: its result is the one recordInfo reports.
    done = tenant.wait_job(job["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    assert "169.254.169.254" not in json.dumps(done)
    assert "poll" in [e["type"] for e in tenant.events(job["id"])]


def test_polling_finishes_a_job_whose_callback_is_lost(stack: Stack, tenant: TenantClient) -> None:
    stack.sandbox_fault("kie", "callback", "callback_lost")
    job = tenant.create_job(
        model="seedream-4.0-edit",
        prompt="a lost callback",
        image=data_url(png_bytes()),
        provider_options={"_sandbox": {"fault": "callback_lost"}},
    )
    done = tenant.wait_job(job["id"])
    assert done["status"] == "succeeded", done
    types = [e["type"] for e in tenant.events(job["id"])]
    assert "callback.received" not in types
    assert "poll" in types


def test_vendor_rejection_fails_the_job_with_a_mapped_error(
    stack: Stack, tenant: TenantClient, receiver: Receiver
) -> None:
    job = tenant.create_job(
        model="seededit-3.0",
        prompt="something forbidden",
        image=data_url(png_bytes()),
        webhook_url=receiver.url,
        provider_options={"_sandbox": {"fault": "moderation"}},
    )
    done = tenant.wait_job(job["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "content_rejected"
    assert done["error"]["provider"] == "ark"
    assert done["error"]["provider_code"]
    assert done["outputs"] == []
    payload = _verify(tenant, receiver.wait_for(1)[0])
    assert payload["type"] == "job.failed"


def test_transient_vendor_errors_are_retried(stack: Stack, tenant: TenantClient) -> None:
    stack.sandbox_fault("*", "create", "server_error", count=2, status=503)
    job = tenant.create_job(model="seededit-3.0", prompt="retry me", image=data_url(png_bytes()))
    done = tenant.wait_job(job["id"], timeout=40)
    assert done["status"] == "succeeded", done
    outcomes = [a["outcome"] for a in done["usage"]["attempts"]]
    assert outcomes == ["failed", "failed", "succeeded"]
    assert done["attempts"] == 3
    assert done["usage"]["attempts"][0]["error"] == "provider_unavailable"


@pytest.mark.parametrize(
    ("model", "vendor", "outcome"),
    [("seedream-4.0-edit", "kie", "abandoned"), ("seededit-3.0", "ark", "succeeded")],
    ids=["task-vendor", "sync-vendor"],
)
def test_a_job_canceled_during_its_vendor_call_keeps_the_attempt_and_its_last_event(
    stack: Stack, tenant: TenantClient, model: str, vendor: str, outcome: str
) -> None:
    stack.sandbox_fault(vendor, "create", "latency", seconds=2)
    job = tenant.create_job(model=model, prompt="never mind", image=data_url(png_bytes()))
    wait_until(lambda: "attempt.started" in [e["type"] for e in tenant.events(job["id"])])
    answer = tenant.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert answer.status_code == 200, answer.text
    # The vendor answers after the cancel; what it answered is kept on the job.
    done = wait_until(
        # usage.routing is there from the attempt's start; attempts once the answer is noted.
        lambda: (
            (j := tenant.client.get(f"/v1/jobs/{job['id']}").json())["usage"].get("attempts") and j
        ),
        timeout=15,
    )
    assert done["status"] == "canceled"
    assert done["provider"] == vendor
    assert [(a["provider"], a["outcome"]) for a in done["usage"]["attempts"]] == [(vendor, outcome)]
    if vendor == "kie":
        assert done["usage"]["provider_task_id"]
    listed = tenant.client.get("/v1/jobs", params={"provider": vendor, "status": "canceled"})
    assert job["id"] in [j["id"] for j in listed.json()["data"]]
    time.sleep(1.5)  # room for anything a late step might still write
    types = [e["type"] for e in tenant.events(job["id"])]
    assert types[-1] == "job.canceled", types
    assert types.count("job.canceled") == 1


def test_image_url_input_is_fetched_checked_and_stored(
    stack: Stack, tenant: TenantClient, tmp_path: Path
) -> None:
    image = png_bytes((500, 500), seed=5)
    (tmp_path / "in.png").write_bytes(image)
    server, url = _serve_file(tmp_path)
    try:
        job = tenant.create_job(model="seededit-3.0", prompt="square", image=f"{url}/in.png")
        done = tenant.wait_job(job["id"])
    finally:
        server.shutdown()
    assert done["status"] == "succeeded", done
    assert done["inputs"][0]["sha256"] == hashlib.sha256(image).hexdigest()
    assert (done["inputs"][0]["width"], done["inputs"][0]["height"]) == (500, 500)


def test_image_url_that_is_not_an_image_fails_with_invalid_image(
    stack: Stack, tenant: TenantClient, tmp_path: Path
) -> None:
    (tmp_path / "fake.png").write_bytes(b"GIF89a not really")
    server, url = _serve_file(tmp_path)
    try:
        job = tenant.create_job(model="seededit-3.0", prompt="x", image=f"{url}/fake.png")
        done = tenant.wait_job(job["id"])
    finally:
        server.shutdown()
    assert done["status"] == "failed"
    assert done["error"]["code"] == "invalid_image"
    assert stack.sandbox_stats()  # the sandbox is up; the vendor was simply never called


def _serve_file(directory: Path):
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_webhook_receiver_errors_are_retried_with_the_same_id(
    stack: Stack, tenant: TenantClient, receiver: Receiver
) -> None:
    receiver.responses = [500, 503]
    job = tenant.create_job(
        model="seededit-3.0", prompt="hooks", image=data_url(png_bytes()), webhook_url=receiver.url
    )
    tenant.wait_job(job["id"])
    hooks = receiver.wait_for(3, timeout=30)
    assert len({h.headers["webhook-id"] for h in hooks}) == 1
    for hook in hooks:
        _verify(tenant, hook)
    deliveries = wait_until(
        lambda: [
            d
            for d in tenant.client.get(f"/v1/jobs/{job['id']}/deliveries").json()["data"]
            if d["state"] == "succeeded"
        ]
    )
    assert deliveries[0]["attempt"] == 3
    assert deliveries[0]["status_code"] == 200


def test_job_events_record_the_whole_story(tenant: TenantClient) -> None:
    job = tenant.create_job(model="seededit-3.0", prompt="story", image=data_url(png_bytes()))
    tenant.wait_job(job["id"])
    events = tenant.events(job["id"])
    assert all(e["id"].startswith("evt_") and e["at"].endswith("Z") for e in events)
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert json.dumps(events)  # plain JSON throughout
