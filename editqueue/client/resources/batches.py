"""`client.batches`: up to 1,000 jobs in one all-or-nothing request, followed by their counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any, Required, TypedDict, Unpack

import httpx

from editqueue.client._transport import AsyncTransport, Request, SyncTransport
from editqueue.client.errors import WaitTimeout
from editqueue.client.models import Batch
from editqueue.client.resources._shared import idempotency_headers

DEFAULT_WAIT_TIMEOUT = 900.0


class BatchCreateArgs(TypedDict, total=False):
    """The keyword arguments of `batches.create`."""

    jobs: Required[Sequence[Mapping[str, Any]]]
    defaults: Mapping[str, Any] | None
    metadata: Mapping[str, str] | None
    idempotency_key: str | None


def create_request(
    jobs: Sequence[Mapping[str, Any]],
    defaults: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
    idempotency_key: str | None = None,
) -> Request:
    """`POST /v1/batches` (job bodies as for `POST /v1/jobs`, images as URLs or data URLs)."""
    body: dict[str, Any] = {"jobs": [dict(job) for job in jobs]}
    if defaults:
        body["defaults"] = dict(defaults)
    if metadata:
        body["metadata"] = dict(metadata)
    return Request("POST", "/v1/batches", json=body, headers=idempotency_headers(idempotency_key))


def parse_created(response: httpx.Response) -> Batch:
    """The batch, marked `replayed` when the Idempotency-Key had been used for it before."""
    batch = Batch.model_validate(response.json())
    batch.replayed = response.headers.get("Idempotent-Replayed") == "true"
    return batch


def check_time(deadline: float, batch: Batch, timeout: float) -> float:
    """Seconds left before `deadline`; WaitTimeout once it has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        done = batch.counts.total - batch.counts.queued - batch.counts.running
        raise WaitTimeout(f"batch {batch.id}: {done}/{batch.counts.total} ended after {timeout:g}s")
    return remaining


class Batches:
    """Batches of jobs."""

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def create(self, **args: Unpack[BatchCreateArgs]) -> Batch:
        """Submit the jobs; 422 `ValidationFailed` names fields like `jobs[17].prompt`."""
        return parse_created(self._t.send(create_request(**args)))

    def get(self, batch_id: str) -> Batch:
        """The batch with live counts."""
        return Batch.model_validate(self._t.send(Request("GET", f"/v1/batches/{batch_id}")).json())

    def cancel(self, batch_id: str) -> Batch:
        """Cancel every job of the batch that has not ended."""
        response = self._t.send(Request("POST", f"/v1/batches/{batch_id}/cancel"))
        return Batch.model_validate(response.json())

    def wait(
        self, batch_id: str, *, timeout: float = DEFAULT_WAIT_TIMEOUT, poll_interval: float = 1.0
    ) -> Batch:
        """Poll until every job of the batch has ended."""
        deadline = time.monotonic() + timeout
        while not (batch := self.get(batch_id)).done:
            time.sleep(min(poll_interval, check_time(deadline, batch, timeout)))
        return batch


class AsyncBatches:
    """Batches of jobs (async)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(self, **args: Unpack[BatchCreateArgs]) -> Batch:
        """Submit the jobs (see `Batches.create`)."""
        return parse_created(await self._t.send(create_request(**args)))

    async def get(self, batch_id: str) -> Batch:
        """The batch with live counts."""
        response = await self._t.send(Request("GET", f"/v1/batches/{batch_id}"))
        return Batch.model_validate(response.json())

    async def cancel(self, batch_id: str) -> Batch:
        """Cancel every job of the batch that has not ended."""
        response = await self._t.send(Request("POST", f"/v1/batches/{batch_id}/cancel"))
        return Batch.model_validate(response.json())

    async def wait(
        self, batch_id: str, *, timeout: float = DEFAULT_WAIT_TIMEOUT, poll_interval: float = 1.0
    ) -> Batch:
        """Poll until every job of the batch has ended."""
        deadline = time.monotonic() + timeout
        while not (batch := await self.get(batch_id)).done:
            await asyncio.sleep(min(poll_interval, check_time(deadline, batch, timeout)))
        return batch
