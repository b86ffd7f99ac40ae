"""The invariant checker finds what it should: it passes a healthy run and fails planted faults."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from editqueue.ids import new_id
from editqueue.infra.storage import StorageError, open_storage
from editqueue.jobs.audit import Receipt, audit, check_storage_reachable
from editqueue.models import Job, JobEvent
from tests.conftest import Receiver, TenantClient, data_url, png_bytes
from tests.stack import Stack


@pytest.fixture
def finished_jobs(stack: Stack, tenant: TenantClient, receiver: Receiver) -> list[str]:
    image = data_url(png_bytes())
    ids = [
        tenant.create_job(model=model, prompt="audit", image=image, webhook_url=receiver.url)["id"]
        for model in ("seededit-3.0", "seedream-4.0-edit", "seededit-3.0")
    ]
    for job_id in ids:
        assert tenant.wait_job(job_id)["status"] == "succeeded"
    receiver.wait_for(3)
    return ids


def _receipts(receiver: Receiver) -> list[Receipt]:
    return [Receipt(receiver.url, r.headers, r.body) for r in receiver.requests]


def _audit(stack: Stack, sessions, ids, receipts, **kwargs):
    storage = open_storage(f"file://{stack.storage_dir}", public_url="http://x", signing_key=b"k")
    with sessions() as session:
        return audit(session, storage, job_ids=ids, receipts=receipts, **kwargs)


def test_a_healthy_run_has_no_violations(
    stack: Stack, sessions: sessionmaker[Session], finished_jobs: list[str], receiver: Receiver
) -> None:
    assert _audit(stack, sessions, finished_jobs, _receipts(receiver), vendor_submissions={}) == []


def test_planted_faults_are_each_reported(
    stack: Stack, sessions: sessionmaker[Session], finished_jobs: list[str], receiver: Receiver
) -> None:
    lost, duplicated, missing = finished_jobs
    with sessions() as session, session.begin():
        # A job that never finished…
        session.execute(update(Job).where(Job.id == lost).values(status="running"))
        # …one with a second terminal event…
        job = session.get(Job, duplicated)
        session.add(
            JobEvent(
                id=new_id("evt"),
                job_id=duplicated,
                tenant_id=job.tenant_id,
                type="job.failed",
                terminal=False,
                at=dt.datetime.now(dt.UTC),
            )
        )
        key = session.get(Job, missing).outputs[0]["key"]
    # …and one whose stored output vanished.
    (stack.storage_dir / key).unlink()
    receipts = _receipts(receiver)
    dropped = [r for r in receipts if r.body and missing not in r.body.decode()]
    tampered = [
        Receipt(r.url, r.headers, r.body.replace(b"succeeded", b"SUCCEEDED")) for r in dropped
    ]
    found = _audit(stack, sessions, finished_jobs, tampered, vendor_submissions={duplicated: 5})
    kinds = {(v.kind, v.job_id) for v in found}
    assert ("not_terminal", lost) in kinds
    assert ("terminal_events", duplicated) in kinds
    assert ("outputs", missing) in kinds
    assert ("webhook", missing) in kinds  # its webhook receipt was dropped
    assert ("webhook", lost) in kinds  # its receipt was tampered with: bad signature
    assert ("vendor_submissions", duplicated) in kinds


def test_a_storage_dir_that_does_not_exist_is_refused_before_auditing(tmp_path: Path) -> None:
    # Auditing the wrong directory would report every output missing; it is refused instead.
    missing = open_storage(
        f"file://{tmp_path / 'nowhere'}", public_url="http://x", signing_key=b"k"
    )
    with pytest.raises(StorageError, match="does not exist"):
        check_storage_reachable(missing)
    assert not (tmp_path / "nowhere").exists()  # and not created by the check
    check_storage_reachable(
        open_storage(f"file://{tmp_path}", public_url="http://x", signing_key=b"k")
    )
