"""Crashes and races on real processes: nothing lost, nothing finished twice."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from editqueue.db import make_engine, make_session_factory
from editqueue.models import Delivery, Job, JobEvent
from editqueue.standalone.embedded import EmbeddedRedis
from editqueue.standalone.ports import free_port
from tests.conftest import Receiver, TenantClient, data_url, make_tenant, png_bytes, wait_until
from tests.stack import Stack, running_stack


def terminal_events(sessions: sessionmaker[Session], job_id: str) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(JobEvent.type).where(JobEvent.job_id == job_id, JobEvent.terminal)
            )
        )


@pytest.mark.parametrize("model", ["seededit-3.0", "seedream-4.0-edit"])
def test_worker_sigkilled_mid_job_is_replaced_and_the_job_succeeds_once(
    stack: Stack,
    tenant: TenantClient,
    receiver: Receiver,
    sessions: sessionmaker[Session],
    model: str,
) -> None:
    # Ark: the kill lands during the synchronous vendor call; KIE: while the task runs.
    job = tenant.create_job(
        model=model,
        prompt="survive a crash",
        image=data_url(png_bytes()),
        webhook_url=receiver.url,
        provider_options={"_sandbox": {"fault": "latency", "seconds": 2}},
    )
    wait_until(lambda: "attempt.started" in [e["type"] for e in tenant.events(job["id"])])
    stack.kill_worker()
    assert tenant.client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"
    stack.start_worker()
    done = tenant.wait_job(job["id"], timeout=60)
    assert done["status"] == "succeeded", (done, stack.log("worker"))
    receiver.wait_for(1)
    time.sleep(3)  # long enough for any duplicate delivery to show up
    assert len(receiver.for_job(job["id"])) == 1
    assert terminal_events(sessions, job["id"]) == ["job.succeeded"]
    with sessions() as session:
        count = session.scalar(select(func.count()).where(Delivery.job_id == job["id"]))
    assert count == 1


def test_callbacks_and_polls_racing_finish_the_job_once(
    stack: Stack, tenant: TenantClient, receiver: Receiver, sessions: sessionmaker[Session]
) -> None:
    job = tenant.create_job(
        model="seedream-4.0-edit",
        prompt="race",
        image=data_url(png_bytes()),
        webhook_url=receiver.url,
        provider_options={"_sandbox": {"fault": "callback_lost"}},
    )
    with sessions() as session:
        token = session.scalar(select(Job.callback_token).where(Job.id == job["id"]))
    wait_until(lambda: "provider.task_created" in [e["type"] for e in tenant.events(job["id"])])
    with sessions() as session:
        task_id = session.scalar(select(Job.provider_task_id).where(Job.id == job["id"]))
    # Let the vendor task finish, then fire callbacks and due polls at the same moment.
    time.sleep(1.2)
    body = {
        "code": 200,
        "msg": "success",
        "data": {"taskId": task_id, "state": "success", "resultJson": "", "failCode": ""},
    }
    url = f"{stack.api_url}/v1/callbacks/kie/{token}"

    def make_due() -> None:
        with sessions() as session, session.begin():
            session.execute(update(Job).where(Job.id == job["id"]).values(next_poll_at=func.now()))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(httpx.post, url, json=body) for _ in range(6)]
        futures += [pool.submit(make_due) for _ in range(2)]
        results = [f.result() for f in futures]
    assert all(r.status_code == 200 for r in results if r is not None)
    done = tenant.wait_job(job["id"])
    assert done["status"] == "succeeded"
    receiver.wait_for(1)
    time.sleep(2)
    assert terminal_events(sessions, job["id"]) == ["job.succeeded"]
    assert len(receiver.for_job(job["id"])) == 1


def test_unknown_callback_tokens_are_404(stack: Stack) -> None:
    response = httpx.post(f"{stack.api_url}/v1/callbacks/kie/not-a-token", json={})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    unknown_vendor = httpx.post(f"{stack.api_url}/v1/callbacks/acme/x", json={})
    assert unknown_vendor.status_code == 404


def test_redis_down_during_submit_still_accepts_and_runs_later(
    private_database: str, tmp_path: Path
) -> None:
    # A fixed port: the stack must find Redis where it left it after the restart.
    redis_server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    redis_server.start()
    try:
        with running_stack(
            database_url=private_database,
            redis_url=redis_server.url,
            workdir=tmp_path / "stack",
        ) as stack:
            engine = make_engine(private_database)
            tenant = make_tenant(make_session_factory(engine), stack.api_url)
            redis_server.stop()
            started = time.monotonic()
            response = tenant.client.post(
                "/v1/jobs",
                json={"model": "seededit-3.0", "prompt": "later", "image": data_url(png_bytes())},
            )
            elapsed = time.monotonic() - started
            assert response.status_code == 202, response.text
            assert elapsed < 5, f"submit took {elapsed:.1f}s with Redis down"
            job_id = response.json()["id"]
            ready = httpx.get(f"{stack.api_url}/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["broker"] == "unreachable"
            time.sleep(2)
            assert tenant.client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
            redis_server.start()
            done = tenant.wait_job(job_id, timeout=90)
            assert done["status"] == "succeeded", (done, stack.log("worker"), stack.log("beat"))
            tenant.client.close()
            engine.dispose()
    finally:
        redis_server.stop()


def test_worker_sigkilled_while_polling_is_replaced_and_the_job_succeeds_once(
    stack: Stack, tenant: TenantClient, receiver: Receiver, sessions: sessionmaker[Session]
) -> None:
    job = tenant.create_job(
        model="seedream-4.0-edit",
        prompt="killed while waiting",
        image=data_url(png_bytes()),
        webhook_url=receiver.url,
        provider_options={"_sandbox": {"fault": "callback_lost"}},
    )
    wait_until(lambda: "provider.task_created" in [e["type"] for e in tenant.events(job["id"])])
    stack.kill_worker()
    time.sleep(1.5)  # the vendor task finishes while no worker is alive
    stack.start_worker()
    done = tenant.wait_job(job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1  # taken over by polling, not submitted again
    receiver.wait_for(1)
    time.sleep(2)
    assert terminal_events(sessions, job["id"]) == ["job.succeeded"]
    assert len(receiver.for_job(job["id"])) == 1


def test_worker_sigkilled_during_a_webhook_send_still_delivers(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[str] = []

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            received.append(self.headers["webhook-id"])
            time.sleep(2)  # the worker is killed while it waits for this answer
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        job = tenant.create_job(
            model="seededit-3.0",
            prompt="webhook crash",
            image=data_url(png_bytes()),
            webhook_url=f"http://127.0.0.1:{server.server_address[1]}/hook",
        )
        wait_until(lambda: received, timeout=30)
        stack.kill_worker()
        stack.start_worker()

        def delivered() -> bool:
            data = tenant.client.get(f"/v1/jobs/{job['id']}/deliveries").json()["data"]
            return bool(data) and data[0]["state"] == "succeeded"

        wait_until(delivered, timeout=60)
    finally:
        server.shutdown()
    assert len(set(received)) == 1  # every attempt carried the same webhook-id
    assert terminal_events(sessions, job["id"]) == ["job.succeeded"]


def test_worker_sigkilled_while_storing_results_is_replaced_and_the_job_succeeds_once(
    stack: Stack, tenant: TenantClient, receiver: Receiver, sessions: sessionmaker[Session]
) -> None:
    # Results cannot be written while a file stands where the job's output directory goes,
    # so the job sits in its store step (retrying) when the worker is killed.
    job = tenant.create_job(
        model="seedream-4.0-edit",
        prompt="killed while storing",
        image=data_url(png_bytes()),
        webhook_url=receiver.url,
    )
    job_dir = stack.storage_dir / tenant.id / job["id"]  # its input is already stored there
    wait_until(lambda: "provider.task_created" in [e["type"] for e in tenant.events(job["id"])])
    (job_dir / "out").write_text("not a directory")
    try:
        wait_until(lambda: "step.retry" in [e["type"] for e in tenant.events(job["id"])])
        stack.kill_worker()
        (job_dir / "out").unlink()
        stack.start_worker()
        done = tenant.wait_job(job["id"], timeout=60)
    finally:
        if (job_dir / "out").is_file():
            (job_dir / "out").unlink()
    assert done["status"] == "succeeded", done
    receiver.wait_for(1)
    time.sleep(2)
    assert terminal_events(sessions, job["id"]) == ["job.succeeded"]
    assert len(receiver.for_job(job["id"])) == 1
