"""Result links signed for the address clients use (EDITQUEUE_S3_PUBLIC_ENDPOINT), while the
service itself talks to the store on another (compose: minio:9000 vs localhost:9000)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import boto3
import httpx
import pytest

from editqueue.infra.storage import S3Storage, open_storage
from tests.integration.test_storage_s3 import aws_env, endpoint  # noqa: F401 (fixtures)


def test_links_use_the_public_endpoint(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    public = aws_env.replace("127.0.0.1", "localhost")
    monkeypatch.setenv("EDITQUEUE_S3_PUBLIC_ENDPOINT", public)
    bucket = f"public-links-{time.monotonic_ns()}"
    boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1").create_bucket(Bucket=bucket)
    storage = open_storage(f"s3://{bucket}/results", public_url="http://x", signing_key=b"k")
    assert isinstance(storage, S3Storage)
    storage.put("t/job/out/0.png", b"pixels", "image/png")
    link = storage.signed_url("t/job/out/0.png", 300)
    assert urlsplit(link.url).netloc == urlsplit(public).netloc
    assert httpx.get(link.url).content == b"pixels"
    # Without it, links name the endpoint the service uses.
    monkeypatch.delenv("EDITQUEUE_S3_PUBLIC_ENDPOINT")
    plain = open_storage(f"s3://{bucket}/results", public_url="http://x", signing_key=b"k")
    assert urlsplit(plain.signed_url("t/job/out/0.png", 300).url).netloc == urlsplit(aws_env).netloc
