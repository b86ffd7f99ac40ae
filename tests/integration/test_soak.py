"""A CI-sized soak: random vendor faults, worker kills and a broker restart, then the audit."""

from __future__ import annotations

import pytest

from bench.soak import SoakConfig, run

pytestmark = pytest.mark.slow


def test_soak_keeps_every_invariant(database_url: str) -> None:
    result = run(
        SoakConfig(
            jobs=40,
            tenants=2,
            workers=2,
            kill_every=8.0,
            redis_restarts=1,
            submit_seconds=12.0,
            drain_timeout=200.0,
        ),
        server_url=database_url,
    )
    print(result.summary())
    assert result.statuses.get("not_terminal", 0) == 0, result.summary()
    assert result.violations == [], result.summary()
    assert result.kills >= 1 and result.redis_restarts == 1
    assert result.statuses["succeeded"] > 0 and result.receipts > 0
