"""The result store: a local directory or an S3 bucket behind one small interface.

``open_storage(EDITQUEUE_STORAGE_URL, …)`` picks the backend. Keys are relative,
slash-separated paths such as ``tenant/job_x/out/0.png``; both backends refuse the same
unsafe keys, so moving between them never changes which keys are valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from editqueue.config import Settings

MAX_KEY_LENGTH = 1024  # S3's limit, applied to both backends


class StorageError(Exception):
    """The store refused or failed an operation; the message never holds credentials."""


@dataclass(frozen=True)
class StoredObject:
    """What ``put`` wrote."""

    key: str
    size: int
    sha256: str
    content_type: str


@dataclass(frozen=True)
class SignedLink:
    """A time-limited download link; ``expires_at`` is timezone-aware UTC."""

    url: str
    expires_at: datetime


class Storage(Protocol):
    """The operations the service needs from a result store."""

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Store ``data`` under ``key`` (replacing any object there)."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; StorageError if missing or unreadable."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error."""
        ...

    def signed_url(self, key: str, ttl: int) -> SignedLink:
        """A link that downloads ``key`` for the next ``ttl`` seconds."""
        ...

    def check(self) -> None:
        """Raise StorageError if the store cannot be used (readiness probe)."""
        ...


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise StorageError."""
    if not isinstance(key, str) or not key:
        raise StorageError("storage key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise StorageError(f"storage key is longer than {MAX_KEY_LENGTH} characters")
    if re.search(r"[\x00-\x1f\x7f\\]", key):
        raise StorageError("storage key must not contain control characters or backslashes")
    if key.startswith("/"):
        raise StorageError("storage key must be relative")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError("storage key must not contain empty, '.' or '..' segments")
    return key


def _digest(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _check_ttl(ttl: int) -> int:
    """Links must live at least a second."""
    if ttl < 1:
        raise ValueError("ttl must be at least 1 second")
    return int(ttl)


# -- local directory ---------------------------------------------------------------------


class LocalStorage:
    """Objects as files under ``root``; links are HMAC-signed URLs served by the API."""

    # put() waits on the disk (fsync) without yielding: event-loop callers offload big ones.
    blocking_put = True

    def __init__(self, root: Path, public_url: str, signing_key: bytes) -> None:
        if not Path(root).is_absolute():
            raise StorageError("local storage root must be an absolute path")
        if not signing_key:
            raise StorageError("local storage needs a signing key for its links")
        self.root = Path(root)
        self.public_url = public_url.rstrip("/")
        self._signing_key = signing_key

    def path_for(self, key: str) -> Path:
        """The file that holds ``key`` (always inside ``root``; StorageError for unsafe keys)."""
        path = self.root.joinpath(*check_key(key).split("/"))
        # check_key already rules out traversal; this guards against a future change there.
        if not path.is_relative_to(self.root):
            raise StorageError("storage key escapes the storage root")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Write atomically: temp file in the same directory, fsync, rename, fsync the dir."""
        path = self.path_for(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            # rename is atomic on POSIX: readers see the old file or the new one, never half.
            os.replace(tmp_name, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise StorageError(f"cannot write {key}: {exc.strerror}") from exc
        _fsync_dir(path.parent)  # makes the rename itself survive a power loss
        return StoredObject(
            key=key, size=len(data), sha256=_digest(data), content_type=content_type
        )

    def get(self, key: str) -> bytes:
        """The file's bytes; StorageError if missing or unreadable."""
        path = self.path_for(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StorageError(f"no object stored under {key}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc.strerror}") from exc

    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""
        return self.path_for(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the file (no error if it is already gone)."""
        try:
            self.path_for(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc.strerror}") from exc

    def _sign(self, key: str, expires: int | str) -> str:
        """Hex HMAC-SHA256 over ``key:expires``."""
        message = f"{key}:{expires}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    def signed_url(self, key: str, ttl: int) -> SignedLink:
        """``{public_url}/v1/files/{key}?expires=…&signature=…``, valid for ``ttl`` seconds."""
        check_key(key)
        expires = int(time.time()) + _check_ttl(ttl)
        url = (
            f"{self.public_url}/v1/files/{quote(key, safe='/')}"
            f"?expires={expires}&signature={self._sign(key, expires)}"
        )
        return SignedLink(url=url, expires_at=datetime.fromtimestamp(expires, UTC))

    def verify_link(
        self, key: str, expires: str, signature: str, *, now: float | None = None
    ) -> bool:
        """Whether a link's query values are authentic and unexpired (never raises)."""
        if not isinstance(expires, str) or not re.fullmatch(r"[0-9]{1,12}", expires):
            return False
        if not isinstance(signature, str) or not re.fullmatch(r"[0-9a-f]{64}", signature):
            return False
        try:
            check_key(key)
        except StorageError:
            return False
        current = time.time() if now is None else now
        if int(expires) <= current:
            return False
        return hmac.compare_digest(self._sign(key, expires), signature)

    def check(self) -> None:
        """Create the root if needed and prove it is writable."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root) as probe:
                probe.write(b"ok")
        except OSError as exc:
            raise StorageError(
                f"storage directory {self.root} is not writable: {exc.strerror}"
            ) from exc


def _fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename in it is durable (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the data file is already synced
    finally:
        os.close(fd)


# -- S3 ----------------------------------------------------------------------------------


def _s3_client_from_env(endpoint_override: str | None = None) -> Any:
    """A boto3 S3 client configured from the standard ``AWS_*`` environment variables."""
    import boto3  # imported here: it is slow to load and local storage never needs it
    from botocore.config import Config

    # Passed explicitly so S3-compatible stores work on boto3 versions that ignore the
    # variable; AWS_ENDPOINT_URL_S3 is the service-specific form of the same setting.
    endpoint = (
        endpoint_override
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 3, "mode": "standard"},
        signature_version="s3v4",
        # S3-compatible stores (MinIO, moto, Ceph) rarely have wildcard DNS for buckets.
        s3={"addressing_style": "path"} if endpoint else None,
    )
    return boto3.session.Session().client(
        "s3", region_name=region, endpoint_url=endpoint or None, config=config
    )


def _describe_boto_error(exc: Exception) -> str:
    """A short, credential-free description of a botocore error (code and status only)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "error")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{code} (HTTP {status})" if status else str(code)
    # Transport errors: the class name (EndpointConnectionError, ReadTimeoutError,
    # NoCredentialsError…) says enough; their text can include request details.
    return type(exc).__name__


def _is_not_found(exc: Exception) -> bool:
    """Whether a botocore ClientError means the object (or bucket) does not exist."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("NoSuchKey", "NotFound", "404") or status == 404


class S3Storage:
    """Objects in an S3 (or S3-compatible) bucket under an optional prefix."""

    def __init__(
        self, bucket: str, prefix: str = "", *, client: Any = None, signing_client: Any = None
    ) -> None:
        if not bucket:
            raise StorageError("S3 storage needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client if client is not None else _s3_client_from_env()
        # Links are signed for the host clients open them on (SigV4 signs the host), which
        # may differ from the one the service reaches: minio:9000 inside compose,
        # localhost:9000 for a browser (EDITQUEUE_S3_PUBLIC_ENDPOINT).
        self._signer = signing_client if signing_client is not None else self._client

    def _object_key(self, key: str) -> str:
        """The bucket key of ``key``."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, exc: Exception) -> StorageError:
        """Wrap a botocore error without leaking its text."""
        return StorageError(f"S3 {action} of {key} failed: {_describe_boto_error(exc)}")

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Upload with ContentType and the sha256 in the object metadata."""
        digest = _digest(data)
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self._object_key(key),
                Body=data,
                ContentType=content_type,
                Metadata={"sha256": digest},
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("put", key, exc) from exc
        return StoredObject(key=key, size=len(data), sha256=digest, content_type=content_type)

    def get(self, key: str) -> bytes:
        """The object's bytes; StorageError if missing or unreadable."""
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._object_key(key))
            with contextlib.closing(response["Body"]) as body:
                return body.read()
        except ClientError as exc:
            if _is_not_found(exc):
                raise StorageError(f"no object stored under {key}") from None
            raise self._fail("get", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("get", key, exc) from exc

    def exists(self, key: str) -> bool:
        """Whether the object exists (HEAD)."""
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if _is_not_found(exc):
                return False
            raise self._fail("head", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("head", key, exc) from exc
        return True

    def delete(self, key: str) -> None:
        """Delete the object (S3 treats a missing key as success)."""
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._object_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("delete", key, exc) from exc

    def signed_url(self, key: str, ttl: int) -> SignedLink:
        """A presigned GET URL valid for ``ttl`` seconds (signing is local: no request)."""
        ttl = _check_ttl(ttl)
        expires_at = datetime.fromtimestamp(int(time.time()) + ttl, UTC)
        try:
            url = self._signer.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._object_key(key)},
                ExpiresIn=ttl,
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("signing", key, exc) from exc
        return SignedLink(url=url, expires_at=expires_at)

    def check(self) -> None:
        """HEAD the bucket: proves the endpoint, the credentials and the bucket."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(
                f"S3 bucket {self.bucket} is not usable: {_describe_boto_error(exc)}"
            ) from exc


# -- memory ------------------------------------------------------------------------------


class MemoryStorage:
    """Objects in a dict of this process (unit tests, throw-away runs): ``memory://``.

    ``fail(op)`` makes the next calls of ``op`` (put, get, exists, delete, signed_url,
    check) raise StorageError, so a caller's handling of a broken store can be driven.
    """

    def __init__(self, public_url: str = "memory://") -> None:
        self.public_url = public_url if public_url.endswith("/") else f"{public_url}/"
        self.objects: dict[str, tuple[bytes, str]] = {}
        self._failing: dict[str, int] = {}
        self._lock = threading.Lock()

    def fail(self, op: str, times: int = 1_000_000) -> None:
        """Make the next ``times`` calls of ``op`` fail (0 heals it)."""
        with self._lock:
            self._failing[op] = times

    def _check(self, op: str, key: str | None = None) -> None:
        with self._lock:
            left = self._failing.get(op, 0)
            if left > 0:
                self._failing[op] = left - 1
                raise StorageError(f"memory storage {op} failed (injected)")
        if key is not None:
            check_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Keep a copy of ``data`` under ``key``."""
        self._check("put", key)
        with self._lock:
            self.objects[key] = (bytes(data), content_type)
        return StoredObject(
            key=key, size=len(data), sha256=_digest(data), content_type=content_type
        )

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; StorageError if missing."""
        self._check("get", key)
        with self._lock:
            stored = self.objects.get(key)
        if stored is None:
            raise StorageError(f"no object stored under {key}")
        return stored[0]

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""
        self._check("exists", key)
        with self._lock:
            return key in self.objects

    def delete(self, key: str) -> None:
        """Forget ``key`` (no error if it is already gone)."""
        self._check("delete", key)
        with self._lock:
            self.objects.pop(key, None)

    def signed_url(self, key: str, ttl: int) -> SignedLink:
        """An opaque link naming the key and its expiry (nothing serves it)."""
        self._check("signed_url", key)
        expires = int(time.time()) + _check_ttl(ttl)
        url = f"{self.public_url}{quote(key, safe='/')}?expires={expires}"
        return SignedLink(url=url, expires_at=datetime.fromtimestamp(expires, UTC))

    def check(self) -> None:
        """Always usable, unless told to fail."""
        self._check("check")


# -- factory -----------------------------------------------------------------------------


def open_storage(url: str, *, public_url: str, signing_key: bytes) -> Storage:
    """The store named by ``url``: ``file:///abs/path``, ``s3://bucket/prefix`` or ``memory://``.

    ``memory://`` is a new, empty store each time (it lives as long as the object).
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise StorageError("a file storage URL must hold an absolute path: file:///path")
        return LocalStorage(Path(unquote(parts.path)), public_url, signing_key)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StorageError("an S3 storage URL must name a bucket: s3://bucket/prefix")
        public = os.environ.get("EDITQUEUE_S3_PUBLIC_ENDPOINT")
        signer = _s3_client_from_env(public) if public else None
        return S3Storage(parts.netloc, unquote(parts.path), signing_client=signer)
    if parts.scheme == "memory":
        return MemoryStorage()
    raise StorageError("storage URL must be file:///path, s3://bucket/prefix or memory://")


def open_configured_storage(settings: Settings) -> Storage:
    """The store the settings name, with their public URL and signing key."""
    return open_storage(
        settings.effective_storage_url,
        public_url=settings.public_url,
        signing_key=settings.signing_key,
    )
