"""AceDataProvider against the AceData emulator: what only AceData does.

What every vendor does is in test_vendor_contract.py. Also: a job pinned to AceData runs
end to end on the test stack, and a callback about a task the service does not know is
refused (404) and changes nothing.
"""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from editqueue.models import Job
from editqueue.providers.acedata import AceDataProvider
from tests.conftest import TenantClient, data_url, png_bytes
from tests.integration.vendor_contract import (
    adapter_fixture,
    edit_request,
    submit_error,
    unused_input,
    vendor_fixtures,
)
from tests.stack import Stack

sandbox_url, _ = vendor_fixtures({"latency": 0.3})
acedata = adapter_fixture(AceDataProvider, "acedata")


def test_seedream_group_synchronously(acedata: AceDataProvider) -> None:
    request = edit_request("seedream-4.0-edit", aspect_ratio="4:3", resolution="1K", n=2)
    status = acedata.submit(request)
    sizes = {Image.open(io.BytesIO(httpx.get(o.url or "").content)).size for o in status.outputs}
    assert len(status.outputs) == 2 and sizes == {(1168, 880)}


def test_callback_for_an_unknown_task_is_a_notice_to_ignore(acedata: AceDataProvider) -> None:
    body = {"success": True, "task_id": "not-ours", "data": [{"image_url": "https://x/y.jpg"}]}
    notice = acedata.parse_callback({}, json.dumps(body).encode())
    assert notice.task_id == "not-ours"
    with pytest.raises(ValueError):
        acedata.parse_callback({}, b'{"task_id": "no success field"}')


@pytest.mark.parametrize(
    ("change", "code", "provider_code", "status"),
    [
        ({"guidance_scale": 0.5}, "invalid_request", "bad_request", 400),
        ({"images": [unused_input((14, 200))]}, "invalid_image", "bad_request", 400),
    ],
    ids=["guidance", "narrow-image"],
)
def test_synchronous_refusals(
    acedata: AceDataProvider, change: dict[str, Any], code: str, provider_code: str, status: int
) -> None:
    error = submit_error(acedata, edit_request(**change))
    assert (error.code, error.provider_code, error.retryable, error.status_code) == (
        code,
        provider_code,
        False,
        status,
    )


def test_stack_runs_acedata_jobs_and_refuses_foreign_callbacks(
    stack: Stack, tenant: TenantClient, sessions: sessionmaker[Session]
) -> None:
    job = tenant.create_job(
        model="seededit-3.0", prompt="via acedata", image=data_url(png_bytes()), provider="acedata"
    )
    done = tenant.wait_job(job["id"])
    assert (done["status"], done["provider"]) == ("succeeded", "acedata"), done
    with sessions() as session:
        token = session.scalar(select(Job.callback_token).where(Job.id == job["id"]))
    foreign = {"success": True, "task_id": "someone-elses", "trace_id": "t", "data": []}
    events = tenant.events(job["id"])
    response = httpx.post(f"{stack.api_url}/v1/callbacks/acedata/{token}", json=foreign)
    assert response.status_code == 404, response.text
    assert tenant.client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"
    assert tenant.events(job["id"]) == events
