"""One-time, short-lived sign-in links (`/console/signin/<token>`), stdlib only.

The standalone launcher prints such a link instead of a URL carrying the API key: the
token names the key by its stored digest, expires soon, and is accepted once (the console
remembers its nonce in Redis).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

TOKEN_TTL_SECONDS = 1800
_CONTEXT = b"editqueue-console-signin"


@dataclass(frozen=True)
class SigninClaim:
    """What a valid token says: the key (by digest) it signs in, and its one-time nonce."""

    key_digest: str
    nonce: str


def _mac(signing_key: bytes, payload: bytes) -> str:
    key = hmac.new(signing_key, _CONTEXT, hashlib.sha256).digest()
    digest = hmac.new(key, payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_signin_token(
    signing_key: bytes, key_digest: str, *, ttl: int = TOKEN_TTL_SECONDS, now: float | None = None
) -> str:
    """A token that signs in the API key stored under `key_digest` until `ttl` from now."""
    expires = int((now or time.time()) + ttl)
    payload = f"{key_digest}.{expires}.{secrets.token_urlsafe(12)}"
    raw = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"{raw}.{_mac(signing_key, payload.encode())}"


def read_signin_token(signing_key: bytes, token: str, *, now: float | None = None) -> SigninClaim:
    """The claim of a genuine, unexpired token; ValueError otherwise (one-time use is the
    caller's: it must remember `nonce`)."""
    raw, _, mac = token.partition(".")
    if not raw or not mac or len(token) > 400:
        raise ValueError("malformed sign-in token")
    try:
        payload = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (ValueError, UnicodeError):
        raise ValueError("malformed sign-in token") from None
    if not hmac.compare_digest(mac, _mac(signing_key, payload.encode())):
        raise ValueError("sign-in token signature does not match")
    digest, expires, nonce = [*payload.split("."), "", ""][:3]
    if not expires.isdigit() or int(expires) < (now or time.time()):
        raise ValueError("sign-in token expired")
    return SigninClaim(key_digest=digest, nonce=nonce)
