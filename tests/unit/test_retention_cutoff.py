"""Retention's pure rules: which limit applies, the cutoff, the object keys, the id bound."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from ulid import ULID

from editqueue.jobs.retention import cutoff_for, effective_days, object_keys
from editqueue.jobs.states import id_floor

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def test_the_tenants_retention_wins_over_the_deployments() -> None:
    assert effective_days(7, 90) == 7
    assert effective_days(None, 90) == 90
    assert effective_days(365, None) == 365


def test_no_retention_anywhere_keeps_forever() -> None:
    assert effective_days(None, None) is None
    assert cutoff_for(None, NOW) is None


def test_cutoff_is_that_many_days_before_now() -> None:
    assert cutoff_for(30, NOW) == dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
    assert cutoff_for(1, NOW) == NOW - dt.timedelta(days=1)


@pytest.mark.parametrize("days", [0, -3])
def test_a_retention_under_a_day_is_refused(days: int) -> None:
    with pytest.raises(ValueError):
        cutoff_for(days, NOW)


def test_object_keys_are_the_stored_inputs_and_outputs_only() -> None:
    inputs: list[dict[str, Any]] = [
        {"source": "url", "url": "https://x/a.png", "key": None},
        {"source": "upload", "key": "t/job_1/in/1.png"},
    ]
    outputs = [{"index": 0, "key": "t/job_1/out/0.png"}, {"index": 1, "key": "t/job_1/out/1.png"}]
    assert object_keys(inputs, outputs) == [
        "t/job_1/in/1.png",
        "t/job_1/out/0.png",
        "t/job_1/out/1.png",
    ]
    assert object_keys([], []) == []


def _minted_at(moment: dt.datetime) -> str:
    return f"job_{ULID.from_timestamp(moment.timestamp())}"


def test_id_floor_sorts_between_ids_minted_before_and_after() -> None:
    floor = id_floor("job", NOW)
    assert _minted_at(NOW - dt.timedelta(milliseconds=1)) < floor
    assert _minted_at(NOW) >= floor
    assert _minted_at(NOW + dt.timedelta(seconds=1)) > floor
    assert id_floor("job", NOW - dt.timedelta(days=1)) < floor
