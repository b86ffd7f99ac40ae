"""The operator commands: migrate, tenants create, keys create."""

from __future__ import annotations

import subprocess

import httpx

from tests.conftest import editqueue_cli
from tests.stack import Stack


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return editqueue_cli(*args, env={"DATABASE_URL": database_url})


def test_migrate_is_idempotent(database_url: str) -> None:
    result = _cli(database_url, "migrate")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr


def test_tenant_and_key_creation_give_a_working_key(database_url: str, stack: Stack) -> None:
    created = _cli(database_url, "tenants", "create", "cli-tenant")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().startswith("ten_")
    duplicate = _cli(database_url, "tenants", "create", "cli-tenant")
    assert duplicate.returncode != 0
    assert "already exists" in duplicate.stderr
    key = _cli(database_url, "keys", "create", "--tenant", "cli-tenant")
    assert key.returncode == 0, key.stderr
    lines = key.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("eq_")
    response = httpx.get(
        f"{stack.api_url}/v1/jobs", headers={"Authorization": f"Bearer {lines[0]}"}
    )
    assert response.status_code == 200


def test_unknown_tenant_and_bad_config_are_clear_errors(database_url: str) -> None:
    missing = _cli(database_url, "keys", "create", "--tenant", "nobody")
    assert missing.returncode != 0
    assert "no tenant named 'nobody'" in missing.stderr
    bad = _cli("mysql://nope", "migrate")
    assert bad.returncode != 0
    assert "DATABASE_URL" in bad.stderr and "Traceback" not in bad.stderr


# -- operator controls ---------------------------------------------------------------------


def _operator(database_url: str, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return editqueue_cli(*args, env={"DATABASE_URL": database_url, "REDIS_URL": redis_url})


def test_tenants_list_show_and_set(database_url: str, redis_url: str, stack: Stack) -> None:
    def run(*args: str) -> str:
        result = _operator(database_url, redis_url, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("tenants", "create", "cli-quota")
    key = run("keys", "create", "--tenant", "cli-quota").strip()
    assert "cli-quota\tdefault\tdefault" in run("tenants", "list")
    out = run("tenants", "set", "cli-quota", "--max-running", "4", "--rate-limit", "3")
    assert "max_running_jobs=4 rate_limit=3" in out
    shown = run("tenants", "show", "cli-quota")
    assert "max_running_jobs: 4" in shown and "rate_limit: 3" in shown and "live_keys: 1" in shown
    # The new rate reaches the running API at once (burst = 2 × rate).
    response = httpx.get(f"{stack.api_url}/v1/jobs", headers={"Authorization": f"Bearer {key}"})
    assert response.headers["RateLimit-Limit"] == "6"
    run("tenants", "set", "cli-quota", "--rate-limit", "default")
    assert "rate_limit: default" in run("tenants", "show", "cli-quota")
    bad = _operator(database_url, redis_url, "tenants", "set", "cli-quota", "--max-running", "0")
    assert bad.returncode != 0 and "max_running_jobs" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = _operator(database_url, redis_url, "tenants", "show", "nobody")
    assert missing.returncode != 0 and "no tenant named 'nobody'" in missing.stderr


def test_keys_list_revoke_and_rotate(database_url: str, redis_url: str, stack: Stack) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        result = _operator(database_url, redis_url, *args)
        assert result.returncode == 0, result.stderr
        return result

    run("tenants", "create", "cli-keys")
    first = run("keys", "create", "--tenant", "cli-keys").stdout.strip()
    second = run("keys", "create", "--tenant", "cli-keys").stdout.strip()
    listing = run("keys", "list", "--tenant", "cli-keys").stdout
    assert first not in listing and second not in listing  # ids and prefixes only
    rows = [line.split("\t") for line in listing.splitlines()[1:]]
    assert len(rows) == 2 and all(r[0].startswith("key_") and r[4] == "-" for r in rows)
    first_id = next(r[0] for r in rows if first.startswith(r[1].rstrip("…")))
    second_id = next(r[0] for r in rows if r[0] != first_id)

    def status(key: str) -> int:
        auth = {"Authorization": f"Bearer {key}"}
        return httpx.get(f"{stack.api_url}/v1/jobs", headers=auth).status_code

    # Warm the API's key cache, then revoke from this other process: refused at once.
    assert {status(first) for _ in range(10)} == {200}
    run("keys", "revoke", first_id)
    assert {status(first) for _ in range(10)} == {401}
    assert status(second) == 200
    revoked_row = next(
        line
        for line in run("keys", "list", "--tenant", "cli-keys").stdout.splitlines()
        if line.startswith(first_id)
    )
    assert not revoked_row.endswith("\t-")

    rotated = run("keys", "rotate", second_id)
    new_key = rotated.stdout.strip()
    assert new_key.startswith("eq_") and new_key != second
    assert status(second) == 401 and status(new_key) == 200
    again = _operator(database_url, redis_url, "keys", "rotate", second_id)
    assert again.returncode != 0 and "revoked" in again.stderr
    unknown = _operator(database_url, redis_url, "keys", "revoke", "key_nope")
    assert unknown.returncode != 0 and "no API key" in unknown.stderr
