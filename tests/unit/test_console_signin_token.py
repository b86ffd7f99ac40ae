"""The console's one-time sign-in links: signed, expiring, bound to one key digest."""

from __future__ import annotations

import pytest

from api.console.signin_token import make_signin_token, read_signin_token

KEY = b"secret-key"
DIGEST = "ab" * 32


def test_a_token_names_its_key_and_carries_a_fresh_nonce() -> None:
    first = read_signin_token(KEY, make_signin_token(KEY, DIGEST))
    second = read_signin_token(KEY, make_signin_token(KEY, DIGEST))
    assert first.key_digest == second.key_digest == DIGEST
    assert first.nonce and first.nonce != second.nonce


def test_another_secret_or_an_edit_is_refused() -> None:
    token = make_signin_token(KEY, DIGEST)
    with pytest.raises(ValueError, match="signature"):
        read_signin_token(b"other-key", token)
    raw, mac = token.split(".")
    forged = make_signin_token(KEY, "cd" * 32).split(".")[0]
    with pytest.raises(ValueError, match="signature"):
        read_signin_token(KEY, f"{forged}.{mac}")
    with pytest.raises(ValueError, match="malformed"):
        read_signin_token(KEY, raw)


def test_an_old_token_has_expired() -> None:
    token = make_signin_token(KEY, DIGEST, ttl=60, now=1_000_000)
    assert read_signin_token(KEY, token, now=1_000_059).key_digest == DIGEST
    with pytest.raises(ValueError, match="expired"):
        read_signin_token(KEY, token, now=1_000_061)
