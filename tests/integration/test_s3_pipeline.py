"""A job whose results go to an S3-compatible store (moto's server on loopback)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from editqueue.db import make_engine, make_session_factory
from tests import servers
from tests.conftest import data_url, make_tenant, png_bytes
from tests.stack import running_stack


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_outputs_are_stored_in_s3_and_linked_with_presigned_urls(
    private_database: str, s3_endpoint: str, tmp_path: Path
) -> None:
    aws = {
        "AWS_ACCESS_KEY_ID": "AKIATEST",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIATEST",
        aws_secret_access_key="test-secret",
    )
    s3.create_bucket(Bucket="results")
    redis_server = servers.start_private_redis(tmp_path / "redis")
    with running_stack(
        database_url=private_database,
        redis_url=redis_server.url,
        workdir=tmp_path / "stack",
        extra_env={**aws, "EDITQUEUE_STORAGE_URL": "s3://results/editqueue"},
    ) as stack:
        engine = make_engine(private_database)
        tenant = make_tenant(make_session_factory(engine), stack.api_url)
        image = png_bytes((300, 300), seed=9)
        job = tenant.create_job(model="seededit-3.0", prompt="s3", image=data_url(image))
        done = tenant.wait_job(job["id"], timeout=40)
        tenant.client.close()
        engine.dispose()
    redis_server.stop()
    assert done["status"] == "succeeded", done
    [output] = done["outputs"]
    assert output["url"].startswith(s3_endpoint)
    assert "X-Amz-Signature" in output["url"]
    fetched = httpx.get(output["url"])
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == output["sha256"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="results")["Contents"]]
    assert f"editqueue/{tenant.id}/{job['id']}/out/0.jpg" in keys
    assert any(k.endswith("/in/0.png") for k in keys)
