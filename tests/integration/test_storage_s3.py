"""S3Storage end to end against a moto S3 server on loopback (configured from the env)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from editqueue.infra.storage import S3Storage, StorageError, open_storage

BUCKET = "editqueue-results"
KEY = "tenant_1/job_x/out/0.png"
SECRET = "s3cr3t-value-that-must-never-leak"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port; yields its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp_path: Path) -> str:
    """Credentials and endpoint as an operator would set them; nothing from ~/.aws."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEDITQUEUETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    return endpoint


@pytest.fixture
def store(aws_env: str) -> S3Storage:
    """An S3Storage over a fresh bucket, built the way the service builds it."""
    s3 = boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1")
    bucket = f"{BUCKET}-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=bucket)
    storage = open_storage(f"s3://{bucket}/results", public_url="http://x", signing_key=b"k")
    assert isinstance(storage, S3Storage)
    return storage


def test_put_get_exists_delete(store: S3Storage) -> None:
    data = b"\x89PNG not really" * 100
    stored = store.put(KEY, data, "image/png")
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert store.exists(KEY)
    assert store.get(KEY) == data

    store.delete(KEY)
    assert not store.exists(KEY)
    store.delete(KEY)


def test_objects_carry_content_type_sha256_and_prefix(store: S3Storage, aws_env: str) -> None:
    data = b"jpeg bytes"
    store.put(KEY, data, "image/jpeg")
    s3 = boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1")
    head = s3.head_object(Bucket=store.bucket, Key=f"results/{KEY}")
    assert head["ContentType"] == "image/jpeg"
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_missing_key(store: S3Storage) -> None:
    with pytest.raises(StorageError, match="no object stored under") as info:
        store.get("tenant_1/missing.png")
    assert SECRET not in str(info.value)
    assert not store.exists("tenant_1/missing.png")


def test_unsafe_keys_are_refused(store: S3Storage) -> None:
    with pytest.raises(StorageError):
        store.put("../escape.png", b"x", "image/png")


def test_presigned_url_downloads_the_object(store: S3Storage) -> None:
    data = b"presigned bytes"
    store.put(KEY, data, "image/png")
    link = store.signed_url(KEY, 300)
    assert SECRET not in link.url
    response = httpx.get(link.url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"


def test_presigned_url_carries_its_expiry(store: S3Storage) -> None:
    # moto 5 serves presigned URLs without enforcing X-Amz-Expires (its source has no
    # expiry check), so "expired links are refused" cannot be observed here; what we can
    # check is that the signed URL states the requested lifetime from the signing time.
    store.put(KEY, b"short-lived", "image/png")
    before = datetime.now(UTC).replace(microsecond=0)
    link = store.signed_url(KEY, 1)
    query = parse_qs(urlsplit(link.url).query)
    assert query["X-Amz-Expires"] == ["1"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed_at <= datetime.now(UTC)
    assert abs((link.expires_at - signed_at).total_seconds() - 1) <= 1
    assert link.expires_at.tzinfo is UTC


def test_check(store: S3Storage) -> None:
    store.check()
    with pytest.raises(StorageError, match="not usable") as info:
        S3Storage("no-such-bucket").check()
    assert SECRET not in str(info.value)


def test_errors_never_show_credentials(aws_env: str) -> None:
    # Nothing listens on this port: the error is a transport error, wrapped. One attempt
    # only, to skip botocore's retry back-off.
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    store = S3Storage("any-bucket", client=client)
    with pytest.raises(StorageError) as info:
        store.put(KEY, b"x", "image/png")
    message = str(info.value)
    assert "EndpointConnectionError" in message
    assert SECRET not in message and "AKIAEDITQUEUETEST" not in message
