"""Local directory storage: atomic files, safe keys, HMAC-signed links."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from editqueue.infra.storage import (
    LocalStorage,
    S3Storage,
    StorageError,
    open_storage,
)

KEY = "tenant_1/job_x/out/0.png"
SIGNING_KEY = b"test-signing-key"


@pytest.fixture
def store(tmp_path: Path) -> LocalStorage:
    """A store rooted in a fresh temporary directory."""
    return LocalStorage(tmp_path / "storage", "http://files.test/", SIGNING_KEY)


def _link_parts(url: str) -> tuple[str, str, str]:
    """(key, expires, signature) from a signed link, as the API route would see them."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    key = parts.path.removeprefix("/v1/files/")
    return key, query["expires"][0], query["signature"][0]


def test_put_get_exists_delete(store: LocalStorage) -> None:
    data = b"\x89PNG fake bytes"
    stored = store.put(KEY, data, "image/png")
    assert stored.key == KEY
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.content_type == "image/png"
    assert store.exists(KEY)
    assert store.get(KEY) == data
    assert store.path_for(KEY).read_bytes() == data

    store.put(KEY, b"replaced", "image/png")
    assert store.get(KEY) == b"replaced"

    store.delete(KEY)
    assert not store.exists(KEY)
    store.delete(KEY)  # deleting twice is fine


def test_missing_key(store: LocalStorage) -> None:
    with pytest.raises(StorageError, match="no object stored under"):
        store.get("tenant_1/nothing.png")
    assert not store.exists("tenant_1/nothing.png")


def test_a_directory_is_not_an_object(store: LocalStorage) -> None:
    store.put(KEY, b"x", "image/png")
    assert not store.exists("tenant_1/job_x")
    with pytest.raises(StorageError, match="cannot read"):
        store.get("tenant_1/job_x")


def test_writes_leave_no_temp_files(store: LocalStorage) -> None:
    for i in range(3):
        store.put(f"t/job/out/{i}.png", b"x" * 1000, "image/png")
    files = sorted(p.name for p in store.root.rglob("*") if p.is_file())
    assert files == ["0.png", "1.png", "2.png"]


def test_failed_write_keeps_the_old_file_and_no_temp_file(store: LocalStorage) -> None:
    store.put(KEY, b"old", "image/png")
    directory = store.path_for(KEY).parent
    # A directory where the file should go makes the final rename fail after the temp
    # file was written, the same path a crash-free I/O error would take.
    blocked = "tenant_1/job_x/out/blocked.png"
    store.path_for(blocked).mkdir()
    (store.path_for(blocked) / "keep").write_bytes(b"")
    with pytest.raises(StorageError, match="cannot write"):
        store.put(blocked, b"new", "image/png")
    assert store.get(KEY) == b"old"
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside.png",
        "tenant/../../outside.png",
        "tenant/./x.png",
        "tenant//x.png",
        "tenant/x.png/",
        "tenant\\..\\x.png",
        "tenant/x\x00.png",
        "tenant/x\n.png",
        "a" * 1025,
    ],
)
def test_unsafe_keys_are_refused(store: LocalStorage, key: str) -> None:
    with pytest.raises(StorageError):
        store.put(key, b"x", "image/png")
    with pytest.raises(StorageError):
        store.path_for(key)
    with pytest.raises(StorageError):
        store.signed_url(key, 60)
    assert not store.verify_link(key, str(int(time.time()) + 60), "0" * 64)


def test_signed_link_verifies(store: LocalStorage) -> None:
    before = time.time()
    link = store.signed_url(KEY, 600)
    assert link.url.startswith("http://files.test/v1/files/tenant_1/job_x/out/0.png?expires=")
    assert link.expires_at.tzinfo is UTC
    assert before + 599 <= link.expires_at.timestamp() <= time.time() + 600
    key, expires, signature = _link_parts(link.url)
    assert key == KEY
    assert int(expires) == int(link.expires_at.timestamp())
    assert store.verify_link(key, expires, signature)


def test_signature_format_is_documented_hmac(store: LocalStorage) -> None:
    _, expires, signature = _link_parts(store.signed_url(KEY, 60).url)
    expected = hmac.new(SIGNING_KEY, f"{KEY}:{expires}".encode(), hashlib.sha256).hexdigest()
    assert signature == expected


def test_tampered_links_are_refused(store: LocalStorage) -> None:
    key, expires, signature = _link_parts(store.signed_url(KEY, 600).url)
    other_key = "tenant_2/job_x/out/0.png"
    flipped = ("1" if signature[0] == "0" else "0") + signature[1:]
    assert not store.verify_link(other_key, expires, signature)
    assert not store.verify_link(key, str(int(expires) + 1000), signature)
    assert not store.verify_link(key, expires, flipped)
    other_store = LocalStorage(store.root, "http://files.test", b"another-key")
    assert not other_store.verify_link(key, expires, signature)


def test_expired_links_are_refused(store: LocalStorage) -> None:
    key, expires, signature = _link_parts(store.signed_url(KEY, 60).url)
    assert store.verify_link(key, expires, signature, now=int(expires) - 1)
    assert not store.verify_link(key, expires, signature, now=int(expires))
    assert not store.verify_link(key, expires, signature, now=int(expires) + 3600)


@pytest.mark.parametrize(
    ("expires", "signature"),
    [
        ("", "0" * 64),
        ("-5", "0" * 64),
        ("12abc", "0" * 64),
        ("9" * 40, "0" * 64),
        ("1e12", "0" * 64),
        (str(int(time.time()) + 60), ""),
        (str(int(time.time()) + 60), "zz" * 32),
        (str(int(time.time()) + 60), "A" * 64),
        (str(int(time.time()) + 60), "0" * 63),
    ],
)
def test_malformed_link_values_are_refused_without_raising(
    store: LocalStorage, expires: str, signature: str
) -> None:
    assert store.verify_link(KEY, expires, signature) is False


def test_check_creates_the_root_and_proves_it_writable(store: LocalStorage) -> None:
    assert not store.root.exists()
    store.check()
    assert store.root.is_dir()
    assert list(store.root.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_check_fails_on_a_read_only_root(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="not writable"):
            LocalStorage(root, "http://files.test", SIGNING_KEY).check()
    finally:
        root.chmod(0o700)


def test_check_fails_when_the_root_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_bytes(b"")
    with pytest.raises(StorageError, match="not writable"):
        LocalStorage(root, "http://files.test", SIGNING_KEY).check()


def test_ttl_must_be_positive(store: LocalStorage) -> None:
    with pytest.raises(ValueError, match="ttl"):
        store.signed_url(KEY, 0)


def test_open_storage_file_url(tmp_path: Path) -> None:
    store = open_storage(
        f"file://{tmp_path}/results", public_url="http://api.test", signing_key=SIGNING_KEY
    )
    assert isinstance(store, LocalStorage)
    assert store.root == tmp_path / "results"
    link = store.signed_url(KEY, 60)
    assert link.url.startswith("http://api.test/v1/files/")
    assert link.expires_at > datetime.now(UTC)


def test_open_storage_s3_url() -> None:
    # Building a client needs no network or credentials; requests are only made on use.
    store = open_storage("s3://results-bucket/edits/", public_url="http://x", signing_key=b"k")
    assert isinstance(store, S3Storage)
    assert (store.bucket, store.prefix) == ("results-bucket", "edits")


@pytest.mark.parametrize(
    "url", ["file://relative/path", "file:relative", "s3:///prefix", "ftp://host/x", "/tmp/x"]
)
def test_open_storage_refuses_bad_urls(url: str) -> None:
    with pytest.raises(StorageError):
        open_storage(url, public_url="http://x", signing_key=b"k")
