"""The async SDK (`from editqueue import AsyncClient`) against the live stack."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from editqueue import AsyncClient
from editqueue.client import JobFinished, NotFound, ValidationFailed
from tests.conftest import Receiver, TenantClient, data_url, png_bytes


def sdk(tenant: TenantClient) -> AsyncClient:
    return AsyncClient(str(tenant.client.base_url), tenant.key)


def run_in_own_loop(scenario: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to the end on a fresh event loop in its own thread.

    Playwright's sync API (the browser tests, earlier in the same session) keeps an event
    loop running on the main thread, where asyncio.run() refuses to start another.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, scenario).result()


def test_create_wait_download_list(tenant: TenantClient, tmp_path: Path) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(png_bytes(seed=6))

    async def scenario() -> None:
        async with sdk(tenant) as client:
            jobs = await asyncio.gather(
                *(
                    client.jobs.create(
                        model="seededit-3.0", prompt=f"p{i}", images=[image], metadata={"i": "x"}
                    )
                    for i in range(3)
                )
            )
            finished = await asyncio.gather(*(client.jobs.wait(j.id, timeout=60) for j in jobs))
            assert [j.status for j in finished] == ["succeeded"] * 3
            [saved] = await client.jobs.download(finished[0], tmp_path / "out")
            digest = hashlib.sha256(saved.read_bytes()).hexdigest()
            assert digest == finished[0].outputs[0].sha256
            listed = [j.id async for j in client.jobs.list(metadata={"i": "x"}, limit=1)]
            assert sorted(listed) == sorted(j.id for j in jobs)

    run_in_own_loop(scenario())


def test_batches_endpoints_and_errors(tenant: TenantClient, receiver: Receiver) -> None:
    async def scenario() -> None:
        async with sdk(tenant) as client:
            endpoint = await client.webhook_endpoints.create(
                url=receiver.url, events=["batch.completed"]
            )
            batch = await client.batches.create(
                jobs=[{"prompt": "a"}, {"prompt": "b"}],
                defaults={"model": "seededit-3.0", "image": data_url(png_bytes())},
            )
            done = await client.batches.wait(batch.id, timeout=60, poll_interval=0.3)
            assert done.counts.succeeded == 2
            [delivery] = receiver.wait_for(1)
            assert endpoint.secret is not None
            event = client.webhooks.verify(delivery.body, delivery.headers, secret=endpoint.secret)
            assert event.type == "batch.completed" and event.batch is not None
            assert event.batch.id == batch.id

            with pytest.raises(NotFound):
                await client.jobs.get("job_nope")
            with pytest.raises(ValidationFailed) as invalid:
                await client.jobs.create(model="seededit-3.0", prompt="p", seed="x")  # type: ignore[arg-type]
            assert "seed" in invalid.value.fields
            with pytest.raises(JobFinished):
                await client.jobs.cancel(batch.job_ids[0])

    run_in_own_loop(scenario())
