"""Canned inputs and vendor answers for the adapter unit tests (httpx.MockTransport), and
an in-process pipeline harness (`make_harness`) for the job-pipeline unit tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from editqueue.config import Settings
from editqueue.ids import new_id
from editqueue.infra.storage import MemoryStorage
from editqueue.jobs import pipeline
from editqueue.jobs import states as jobs
from editqueue.jobs.states import NewJob
from editqueue.metrics import ProviderStats
from editqueue.models import TERMINAL_STATUSES, Job, JobEvent
from editqueue.providers.base import EditRequest, InputImage
from editqueue.providers.fake import FakeProvider, png
from editqueue.providers.limits import Limit, LocalLimits
from editqueue.tenants import create_tenant

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32

Handler = Callable[[httpx.Request], httpx.Response]


def input_image(width: int = 640, height: int = 480) -> InputImage:
    """A tiny PNG input with a link the vendor would fetch."""
    return InputImage(PNG, "image/png", "https://files.test/in.png", width, height)


def edit_request(model: str = "seededit-3.0", **fields: Any) -> EditRequest:
    """An edit request; `fields` override the defaults."""
    values: dict[str, Any] = {"job_id": "job_1", "model": model, "prompt": "make it blue"}
    values.update(fields)
    if "images" not in values:
        values["images"] = [input_image()]
    return EditRequest(**values)


def canned(status: int, body: Any, headers: dict[str, str] | None = None) -> Handler:
    """A handler answering every request with `body` (JSON, or raw text/bytes)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str | bytes):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


# -- an in-process pipeline: real PostgreSQL, fake vendors, memory storage and limits ----------


@dataclasses.dataclass
class Harness:
    """A pipeline Context on the test database with every outside party faked in-process."""

    ctx: pipeline.Context
    sessions: sessionmaker[Session]
    vendors: dict[str, FakeProvider]
    storage: MemoryStorage
    limits: LocalLimits
    tenant_id: str
    published: list[tuple[str, list[Any]]]
    rings: list[int]
    downloads: dict[str, Handler]  # vendor result links: URL → answer
    user_images: dict[str, Handler]  # user-supplied image URLs: URL → answer

    def vendor(self, name: str) -> FakeProvider:
        """The fake adapter serving `name`."""
        return self.vendors[name]

    def new_job(
        self,
        *,
        model: str = "seededit-3.0",
        pin: str | None = None,
        url: str | None = None,
        deadline_seconds: int = 900,
        webhook_url: str | None = None,
    ) -> str:
        """A queued job with one stored input image (or a URL input); returns its id."""
        job_id = new_id("job")
        if url is None:
            data = png(64, 64)
            key = f"{self.tenant_id}/{job_id}/in/0.png"
            stored = self.storage.put(key, data, "image/png")
            item = {
                "source": "upload",
                "key": key,
                "url": None,
                "sha256": stored.sha256,
                "content_type": "image/png",
                "width": 64,
                "height": 64,
                "bytes": stored.size,
            }
        else:
            item = {"source": "url", "url": url, "key": None, "sha256": None}
        new = NewJob(
            id=job_id,
            model=model,
            prompt="make it blue",
            params={"size": "adaptive", "seed": -1, "guidance_scale": 5.5, "watermark": False},
            inputs=[item],
            provider_pin=pin,
            provider_options={},
            webhook_url=webhook_url,
            webhook_events=["job.succeeded", "job.failed"],
            metadata={},
            deadline_seconds=deadline_seconds,
        )
        with self.sessions() as session, session.begin():
            jobs.insert_job(session, self.tenant_id, new)
        return job_id

    def submit(self, job_id: str) -> Job:
        """Run the submit step on a queued job; returns the row after it."""
        pipeline.run_submit(self.ctx, job_id)
        return self.job(job_id)

    def hand_out(self, job_id: str) -> str | None:
        """What the sweep does when the job's timer comes: a fresh hand-out lease."""
        with self.sessions() as session, session.begin():
            return session.execute(
                text(
                    "UPDATE jobs SET lease_id = gen_random_uuid()::text,"
                    " next_poll_at = now() + interval '20 seconds'"
                    " WHERE id = :id AND status = 'running' RETURNING lease_id"
                ),
                {"id": job_id},
            ).scalar_one_or_none()

    def advance(self, job_id: str) -> Job:
        """Hand the job out and run the step its stage needs; returns the row after it."""
        lease = self.hand_out(job_id)
        assert lease is not None, "the job is not running"
        pipeline.run_advance(self.ctx, job_id, lease)
        return self.job(job_id)

    def run(self, job_id: str, steps: int = 10) -> Job:
        """Submit, then advance until the job ends (or `steps` run out)."""
        job = self.submit(job_id)
        for _ in range(steps):
            if job.status in TERMINAL_STATUSES:
                break
            job = self.advance(job_id)
        return job

    def job(self, job_id: str) -> Job:
        """The job's row as it stands."""
        with self.sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None
            session.expunge(job)
            return job

    def events(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The job's events, oldest first: (type, detail)."""
        with self.sessions() as session:
            rows = session.scalars(
                select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
            ).all()
            return [(e.type, dict(e.detail or {})) for e in rows]

    def event_types(self, job_id: str) -> list[str]:
        """The job's event types, oldest first."""
        return [t for t, _ in self.events(job_id)]

    def set_row(self, job_id: str, **values: Any) -> None:
        """Change the job's row behind the pipeline's back (a cancel, a reaper, a clock)."""
        with self.sessions() as session, session.begin():
            session.execute(update(Job).where(Job.id == job_id).values(**values))


def attempt_log(job: Job) -> list[dict[str, Any]]:
    """The job's attempts, wherever the row keeps them."""
    return list(getattr(job, "attempt_log", None) or (job.usage or {}).get("attempts", []))


def _route(table: dict[str, Handler], request: httpx.Request) -> httpx.Response:
    handler = table.get(str(request.url))
    if handler is None:
        return httpx.Response(404, content=b"no such link")
    return handler(request)


def make_harness(
    sessions: sessionmaker[Session],
    vendors: dict[str, FakeProvider],
    **overrides: Any,
) -> Harness:
    """A Harness whose configured vendors are exactly `vendors` (in their route order)."""
    values: dict[str, Any] = {
        "storage_url": "memory://",
        "provider_limits": "memory",
        "poll_scale": 0.01,
        "max_attempts": 3,
        "routes": {"seededit-3.0": tuple(vendors) or ("ark",)},
        **{f"{name}_api_key": "test-key" for name in vendors},
    }
    values.update(overrides)
    settings = Settings(**values)
    storage = MemoryStorage()
    limits = LocalLimits(
        {p: Limit(*settings.provider_limit(p)) for p in vendors},
        failure_threshold=settings.provider_failure_threshold,
        cooldown_seconds=settings.provider_cooldown,
    )
    published: list[tuple[str, list[Any]]] = []
    rings: list[int] = []
    downloads: dict[str, Handler] = {}
    user_images: dict[str, Handler] = {}
    with sessions() as session, session.begin():
        tenant_id = create_tenant(session, new_id("t")).id
    ctx = pipeline.Context(
        settings=settings,
        sessions=sessions,
        storage=storage,
        publisher=lambda task, args: published.append((task, args)),
        provider=lambda name: vendors[name],
        downloads=httpx.Client(transport=httpx.MockTransport(lambda r: _route(downloads, r))),
        user_urls=httpx.Client(transport=httpx.MockTransport(lambda r: _route(user_images, r))),
        limits=limits,
        stats=ProviderStats(None),
        ring_dispatcher=lambda: rings.append(1),
    )
    return Harness(
        ctx, sessions, vendors, storage, limits, tenant_id, published, rings, downloads, user_images
    )
