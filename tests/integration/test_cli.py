"""The operator commands: migrate, tenants create, keys create."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests.stack import Stack


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "editqueue", *args], env=env, capture_output=True, text=True
    )


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
