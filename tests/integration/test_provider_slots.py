"""A vendor's concurrency slots: a job canceled while it waits at the vendor gives its slot up."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from editqueue.db import make_engine, make_session_factory
from editqueue.models import Job
from editqueue.standalone.embedded import EmbeddedRedis
from editqueue.standalone.ports import free_port
from tests.conftest import data_url, make_tenant, png_bytes, wait_until
from tests.stack import running_stack


def test_a_canceled_waiting_job_does_not_keep_its_vendor_slot(
    private_database: str, tmp_path: Path
) -> None:
    redis_server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    redis_server.start()
    engine = make_engine(private_database)
    sessions = make_session_factory(engine)

    def task_of(job_id: str) -> str | None:
        with sessions() as session:
            return session.scalar(select(Job.provider_task_id).where(Job.id == job_id))

    try:
        with running_stack(
            database_url=private_database,
            redis_url=redis_server.url,
            workdir=tmp_path / "stack",
            # One task at a time at Vtrix, and tasks that outlast the test.
            extra_env={"EDITQUEUE_VTRIX_MAX_CONCURRENT": "1", "SANDBOX_LATENCY": "120"},
        ) as stack:
            tenant = make_tenant(sessions, stack.api_url)
            body = {"model": "seededit-3.0", "image": data_url(png_bytes()), "provider": "vtrix"}
            first = tenant.create_job(prompt="holds the slot", **body)["id"]
            wait_until(lambda: task_of(first) is not None, timeout=30)
            second = tenant.create_job(prompt="waits for it", **body)["id"]
            # The vendor is full: the second job is refused a slot while the first waits.
            wait_until(
                lambda: "provider.busy" in [e["type"] for e in tenant.events(second)], timeout=30
            )
            assert task_of(second) is None
            assert tenant.client.post(f"/v1/jobs/{first}/cancel").status_code == 200
            # No worker holds the canceled job any more; its slot is reclaimed on refusal.
            wait_until(lambda: task_of(second) is not None, timeout=30)
            tenant.client.post(f"/v1/jobs/{second}/cancel")
            tenant.client.close()
    finally:
        engine.dispose()
        redis_server.stop()
