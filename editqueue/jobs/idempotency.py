"""Request fingerprints for Idempotency-Key: the same request, however it is serialized."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, TypeVar

from editqueue.errors import IdempotencyKeyReused


class _Fingerprinted(Protocol):
    """A row created under an Idempotency-Key (a job or a batch)."""

    @property
    def request_hash(self) -> str | None: ...


R = TypeVar("R", bound=_Fingerprinted)


def canonical_json(value: Any) -> bytes:
    """One byte form per JSON value: sorted keys, no whitespace, UTF-8.

    surrogatepass, so even a value no store accepts hashes instead of raising here.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def request_hash(body: Any, *attachments: bytes) -> str:
    """sha256 of a parsed body in canonical form, followed by any attached file bytes.

    Key order and whitespace of the JSON a client sends change nothing; any value does.
    """
    digest = hashlib.sha256(canonical_json(body))
    for data in attachments:
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def raw_hash(raw: bytes) -> str:
    """The fingerprint JSON requests were stored under before canonical hashing (sha256 of
    the bytes as sent), still accepted so a retry across the upgrade replays."""
    return hashlib.sha256(raw).hexdigest()


def check_replay(existing: R, request_hash: str, *older_hashes: str) -> R:
    """The row created earlier for a replayed request; another body with its key is refused.

    ``older_hashes``: the same request's fingerprint in formats stored by earlier versions.
    """
    if existing.request_hash not in (request_hash, *older_hashes):
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request body"
        )
    return existing
