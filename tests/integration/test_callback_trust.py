"""A vendor callback is a hint, on the real stack: forged ones change nothing, a matching one
only wakes its job, whose result then comes from the vendor's own task query; callback
tokens and signed links stay out of every process's log."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from editqueue.models import Job, JobEvent
from editqueue.standalone import processes
from editqueue.standalone.ports import free_port
from editqueue.standalone.supervisor import wait_for_http
from tests.conftest import TenantClient, data_url, png_bytes, wait_until
from tests.stack import ROOT, Stack

VENDOR_AUTH = {"Authorization": "Bearer sandbox-key"}
NO_CALLBACK = {"_sandbox": {"fault": "callback_lost"}}
PARKED_FOR = dt.timedelta(hours=1)


# -- arranging ------------------------------------------------------------------------------


def job_row(sessions: sessionmaker[Session], job_id: str) -> Job:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def snapshot(sessions: sessionmaker[Session], job_id: str) -> dict[str, Any]:
    """Everything a callback could change: the job row, its events, its queued messages."""
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        row = {
            name: getattr(job, name)
            for name in (
                "status",
                "stage",
                "provider",
                "provider_task_id",
                "lease_id",
                "next_poll_at",
                "outputs",
                "updated_at",
            )
        }
        row["events"] = list(
            session.scalars(select(JobEvent.id).where(JobEvent.job_id == job_id).order_by("at"))
        )
        row["messages"] = session.scalar(
            text("SELECT count(*) FROM outbox WHERE args->>0 = :id"), {"id": job_id}
        )
        return row


def settled_snapshot(sessions: sessionmaker[Session], job_id: str) -> dict[str, Any]:
    """A snapshot once nothing changes any more (a poll racing the end may still write)."""
    previous = snapshot(sessions, job_id)
    for _ in range(10):
        time.sleep(1.0)
        current = snapshot(sessions, job_id)
        if current == previous:
            return current
        previous = current
    raise AssertionError(f"job {job_id} keeps changing: {previous}")


def _event_types(sessions: sessionmaker[Session], job_id: str) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(JobEvent.type).where(JobEvent.job_id == job_id).order_by(JobEvent.at)
            )
        )


def is_parked(sessions: sessionmaker[Session], job_id: str) -> bool:
    job = job_row(sessions, job_id)
    later = dt.datetime.now(dt.UTC) + PARKED_FOR / 2
    return (
        job.stage == "wait"
        and job.lease_id is None
        and job.next_poll_at is not None
        and job.next_poll_at > later
    )


def park(sessions: sessionmaker[Session], job_id: str) -> None:
    """Take a waiting job off its poll timer, so that only a callback can move it on.

    A poll already under way reschedules the job when it ends; so look again a moment
    later, and park it anew until it stays parked.
    """
    for _ in range(10):
        with sessions() as session, session.begin():
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running", Job.stage == "wait")
                .values(lease_id=None, next_poll_at=func.now() + PARKED_FOR)
            )
        time.sleep(1.0)
        if is_parked(sessions, job_id):
            return
    raise AssertionError(f"job {job_id} could not be parked: {job_row(sessions, job_id)}")


def waiting_job(
    tenant: TenantClient, sessions: sessionmaker[Session], provider: str, model: str
) -> Job:
    """A job waiting on its vendor task, whose own callback the sandbox drops, parked."""
    job = tenant.create_job(
        model=model,
        prompt=f"trust {provider}",
        image=data_url(png_bytes(seed=3)),
        provider=provider,
        provider_options=NO_CALLBACK,
    )
    try:
        wait_until(lambda: job_row(sessions, job["id"]).provider_task_id)
    except AssertionError:
        raise AssertionError(tenant.client.get(f"/v1/jobs/{job['id']}").json()) from None
    park(sessions, job["id"])
    return job_row(sessions, job["id"])


def kie_record(stack: Stack, task_id: str) -> dict[str, Any]:
    """The task as KIE's recordInfo tells it (what only the vendor knows)."""
    answer = httpx.get(
        f"{stack.sandbox_url}/kie/api/v1/jobs/recordInfo",
        params={"taskId": task_id},
        headers=VENDOR_AUTH,
    )
    answer.raise_for_status()
    return answer.json()["data"]


def finished_kie_record(stack: Stack, task_id: str) -> dict[str, Any]:
    return wait_until(
        lambda: (record := kie_record(stack, task_id))["state"] == "success" and record
    )


def _acedata_result(stack: Stack, task_id: str) -> dict[str, Any]:
    """The finished task's result as AceData's task query tells it."""

    def response() -> dict[str, Any] | None:
        answer = httpx.post(
            f"{stack.sandbox_url}/acedata/seedream/tasks",
            json={"id": task_id, "action": "retrieve"},
            headers=VENDOR_AUTH,
        )
        answer.raise_for_status()
        return answer.json().get("response")

    return wait_until(response)


def _sha256_of(url: str) -> str:
    answer = httpx.get(url)
    answer.raise_for_status()
    return hashlib.sha256(answer.content).hexdigest()


def _attacker_image(stack: Stack) -> tuple[str, str]:
    """An image the attacker hosts (a working link), and its sha256."""
    data = png_bytes((512, 384), seed=5)
    answer = httpx.post(
        f"{stack.sandbox_url}/_control/files", content=data, headers={"Content-Type": "image/png"}
    )
    answer.raise_for_status()
    return answer.json()["url"], hashlib.sha256(data).hexdigest()


def _kie_body(task_id: str, urls: list[str]) -> dict[str, Any]:
    result = json.dumps({"resultUrls": urls})
    return {
        "code": 200,
        "msg": "ok",
        "data": {"taskId": task_id, "state": "success", "resultJson": result},
    }


def _polls(stack: Stack, vendor: str) -> int:
    return stack.sandbox_stats()[vendor]["requests"].get("poll", 0)


def _assert_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


# -- forged callbacks -------------------------------------------------------------------------


def test_a_callback_under_another_vendors_path_is_refused(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    job = waiting_job(tenant, sessions, "kie", "seedream-4.0-edit")
    attacker_url, _ = _attacker_image(stack)
    before = snapshot(sessions, job.id)
    # AceData signs nothing: an AceData-shaped body under the KIE job's token.
    forged = {
        "success": True,
        "task_id": job.provider_task_id,
        "data": [{"image_url": attacker_url}],
    }
    _assert_refused(
        httpx.post(f"{stack.api_url}/v1/callbacks/acedata/{job.callback_token}", json=forged)
    )
    assert snapshot(sessions, job.id) == before


def test_a_callback_naming_another_task_is_refused(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    job = waiting_job(tenant, sessions, "kie", "seedream-4.0-edit")
    other = waiting_job(tenant, sessions, "kie", "seedream-4.0-edit")
    attacker_url, _ = _attacker_image(stack)
    before = snapshot(sessions, job.id)
    url = f"{stack.api_url}/v1/callbacks/kie/{job.callback_token}"
    # An unknown task, a near miss, and a real task of the same vendor that is another job's.
    for task_id in ("not-a-task", f"{job.provider_task_id}x", other.provider_task_id or ""):
        _assert_refused(httpx.post(url, json=_kie_body(task_id, [attacker_url])))
    assert snapshot(sessions, job.id) == before


def test_a_callback_before_the_job_has_a_task_is_refused(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    # createTask takes 2 s to answer: the job is submitting, without a task id, meanwhile.
    stack.sandbox_fault("kie", "create", "latency", seconds=2)
    stack.sandbox_fault("kie", "callback", "callback_lost")
    job = tenant.create_job(
        model="seedream-4.0-edit", prompt="early", image=data_url(png_bytes()), provider="kie"
    )
    wait_until(lambda: "attempt.started" in _event_types(sessions, job["id"]))
    row = job_row(sessions, job["id"])
    assert row.provider_task_id is None
    url = f"{stack.api_url}/v1/callbacks/kie/{row.callback_token}"
    _assert_refused(httpx.post(url, json=_kie_body("guessed-task", ["http://127.0.0.1:9/x.png"])))
    assert job_row(sessions, job["id"]).provider_task_id is None, "too late to test"
    done = tenant.wait_job(job["id"])
    assert done["status"] == "succeeded", done
    assert "callback.received" not in _event_types(sessions, job["id"])


# -- forged results -----------------------------------------------------------------------------


def test_a_forged_kie_result_wakes_the_job_but_the_output_is_the_vendors(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    job = waiting_job(tenant, sessions, "kie", "seedream-4.0-edit")
    task_id = job.provider_task_id or ""
    record = finished_kie_record(stack, task_id)
    [vendor_url] = json.loads(record["resultJson"])["resultUrls"]
    attacker_url, attacker_sha = _attacker_image(stack)
    # KIE's HMAC (off here) would cover `taskId.timestamp` only: the links are anyone's.
    url = f"{stack.api_url}/v1/callbacks/kie/{job.callback_token}"
    answer = httpx.post(url, json=_kie_body(task_id, [attacker_url]))
    assert answer.status_code == 200, answer.text
    done = tenant.wait_job(job.id, timeout=15)
    assert done["status"] == "succeeded", done
    [output] = done["outputs"]
    assert output["sha256"] != attacker_sha
    assert output["sha256"] == _sha256_of(vendor_url)


def test_a_forged_acedata_result_wakes_the_job_but_the_output_is_the_vendors(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    job = waiting_job(tenant, sessions, "acedata", "seededit-3.0")
    task_id = job.provider_task_id or ""
    [item] = _acedata_result(stack, task_id)["data"]
    attacker_url, attacker_sha = _attacker_image(stack)
    forged = {"success": True, "task_id": task_id, "data": [{"image_url": attacker_url}]}
    url = f"{stack.api_url}/v1/callbacks/acedata/{job.callback_token}"
    answer = httpx.post(url, json=forged)
    assert answer.status_code == 200, answer.text
    done = tenant.wait_job(job.id, timeout=15)
    assert done["status"] == "succeeded", done
    [output] = done["outputs"]
    assert output["sha256"] != attacker_sha
    assert output["sha256"] == _sha256_of(item["image_url"])


# -- genuine callbacks ----------------------------------------------------------------------------


def test_a_genuine_callback_wakes_the_job_which_finishes_by_asking_the_vendor(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    job = waiting_job(tenant, sessions, "kie", "seedream-4.0-edit")
    record = finished_kie_record(stack, job.provider_task_id or "")
    polls_before = _polls(stack, "kie")
    genuine = {"code": 200, "msg": "Playground task completed successfully.", "data": record}
    answer = httpx.post(f"{stack.api_url}/v1/callbacks/kie/{job.callback_token}", json=genuine)
    assert answer.status_code == 200, answer.text
    # Parked for an hour: finishing now is the callback's doing.
    assert tenant.wait_job(job.id, timeout=15)["status"] == "succeeded"
    types = _event_types(sessions, job.id)
    after = types[types.index("callback.received") :]
    assert after.index("poll") < after.index("job.succeeded"), types
    assert _polls(stack, "kie") > polls_before


def test_replayed_callbacks_for_a_finished_job_write_nothing(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    job = tenant.create_job(
        model="seedream-4.0-edit", prompt="replays", image=data_url(png_bytes()), provider="kie"
    )
    assert tenant.wait_job(job["id"])["status"] == "succeeded"
    # The sandbox's own callback has come and gone (before or after the poll that won).
    wait_until(lambda: stack.sandbox_stats()["kie"]["callbacks"].get("sent"))
    row = job_row(sessions, job["id"])
    record = kie_record(stack, row.provider_task_id or "")
    genuine = {"code": 200, "msg": "Playground task completed successfully.", "data": record}
    before = settled_snapshot(sessions, job["id"])
    url = f"{stack.api_url}/v1/callbacks/kie/{row.callback_token}"
    for _ in range(20):
        answer = httpx.post(url, json=genuine)
        assert (answer.status_code, answer.json()) == (200, {"received": True})
    assert snapshot(sessions, job["id"]) == before


# -- logs ---------------------------------------------------------------------------------------

# A signature-bearing query parameter followed by an actual value.
_SIGNED_VALUE = re.compile(r"[?&](?:sig|signature|x-amz-signature)=[^&\s<]", re.IGNORECASE)


@contextlib.contextmanager
def _logging_api(stack: Stack, log_path: Path) -> Iterator[str]:
    """A second API process with gunicorn's access log on (the stack's own runs quiet)."""
    port = free_port()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            processes.api_argv(f"127.0.0.1:{port}", workers=1),
            env=stack.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _failing_vendor_callback(stack: Stack, token: str) -> None:
    """A KIE task whose callback URL is dead: the sandbox logs the failed callback's URL."""
    image_url, _ = _attacker_image(stack)
    body = {
        "model": "bytedance/seedream-v4-edit",
        "callBackUrl": f"http://127.0.0.1:{free_port()}/v1/callbacks/kie/{token}",
        "input": {"prompt": "log me", "image_urls": [image_url]},
    }
    answer = httpx.post(
        f"{stack.sandbox_url}/kie/api/v1/jobs/createTask", json=body, headers=VENDOR_AUTH
    )
    assert answer.json()["code"] == 200, answer.text
    wait_until(lambda: stack.sandbox_stats()["kie"]["callbacks"].get("failed"))


def test_callback_tokens_and_signed_links_stay_out_of_logs(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # A KIE job end to end: the sandbox fetches our signed input link and calls back; the
    # worker fetches the sandbox's signed result link.
    job = tenant.create_job(
        model="seedream-4.0-edit", prompt="logs", image=data_url(png_bytes()), provider="kie"
    )
    done = tenant.wait_job(job["id"])
    assert done["status"] == "succeeded", done
    wait_until(lambda: stack.sandbox_stats()["kie"]["callbacks"].get("sent"))
    token = job_row(sessions, job["id"]).callback_token or ""
    access_log = tmp_path / "api-access.log"
    with _logging_api(stack, access_log) as api_url:
        assert httpx.post(f"{api_url}/v1/callbacks/kie/{token}", json={}).status_code == 400
        output_link = done["outputs"][0]["url"].replace(stack.api_url, api_url)
        assert httpx.get(output_link).status_code == 200
    _failing_vendor_callback(stack, "dead-end-token-" + token[:12])

    logs = {path.name: path.read_text(errors="replace") for path in stack.workdir.glob("*.log")}
    logs[access_log.name] = access_log.read_text(errors="replace")
    assert {"api.log", "worker.log", "sandbox.log"} <= logs.keys()
    for name, content in logs.items():
        assert token not in content, name
        assert token[:12] not in content, name
        assert not _SIGNED_VALUE.search(content), (name, _SIGNED_VALUE.search(content))
    # The lines are there, only masked: the test would see a leak.
    assert "/v1/callbacks/kie/<redacted>" in logs[access_log.name]
    assert "/v1/files/" in logs[access_log.name] and "?<redacted>" in logs[access_log.name]
    assert re.search(r"/kie/files/\S+\?<redacted>", logs["sandbox.log"])
    assert "/v1/callbacks/kie/<redacted>" in logs["sandbox.log"]


@pytest.fixture(autouse=True)
def _no_parked_jobs_left(sessions: sessionmaker[Session]) -> Iterator[None]:
    """Parked jobs would wait an hour; let them finish (by polling) for the tests after."""
    yield
    with sessions() as session, session.begin():
        session.execute(
            update(Job)
            .where(Job.status == "running", Job.next_poll_at > func.now() + PARKED_FOR / 2)
            .values(next_poll_at=func.now())
        )
