"""Pure logic of the high-volume work: defaults merging, keys, Prefer parsing, limit headers."""

from __future__ import annotations

import pytest

from api.errors import ApiProblem
from api.rate_limit import Decision, redis_client_url
from api.streaming import format_event, parse_last_event_id, parse_prefer_wait
from editqueue.cli.jobs import Item, batch_key
from editqueue.ids import new_id
from editqueue.jobs.batches import (
    all_queued_counts,
    merge_defaults,
    too_many_errors,
    unknown_default_fields,
)
from editqueue.models import JobEvent


def test_defaults_go_under_each_item_and_metadata_merges_by_key() -> None:
    defaults = {"model": "seededit-3.0", "prompt": "snow", "metadata": {"a": "1", "b": "2"}}
    item = {"prompt": "rain", "metadata": {"b": "3"}}
    merged = merge_defaults(item, defaults)
    assert merged == {"model": "seededit-3.0", "prompt": "rain", "metadata": {"a": "1", "b": "3"}}
    assert item == {"prompt": "rain", "metadata": {"b": "3"}}  # inputs are not modified
    assert merge_defaults(item, None) == item


def test_unknown_default_fields_are_named() -> None:
    assert unknown_default_fields({"model": "x", "modle": "y", "zz": 1}) == ["modle", "zz"]
    assert unknown_default_fields(None) == []


def test_all_or_nothing_error_counts_bad_items_and_caps_the_list() -> None:
    errors = [{"field": f"jobs[{i // 2}].prompt", "message": "bad"} for i in range(300)]
    problem = too_many_errors(errors, 1000)
    assert problem.detail.startswith("150 of 1000 jobs are invalid")
    assert len(problem.errors) == 100


def test_new_batch_counts() -> None:
    assert all_queued_counts(3) == {
        "total": 3,
        "queued": 3,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "canceled": 0,
    }


def test_ids_made_in_a_row_sort_in_that_order() -> None:
    # A batch's job order is recovered by ordering its jobs by id.
    ids = [new_id("job") for _ in range(5000)]
    assert ids == sorted(ids)


def test_cli_batch_keys_follow_content_and_parameters() -> None:
    items = [Item("a", {"image": "data:1"}), Item("b", {"image": "data:2"})]
    key = batch_key(items, {"model": "m", "prompt": "p"})
    assert key == batch_key(list(items), {"prompt": "p", "model": "m"})
    assert key != batch_key(items, {"model": "m", "prompt": "q"})
    assert key != batch_key(items[::-1], {"model": "m", "prompt": "p"})
    assert len(key) <= 255


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("wait=5", 5),
        ("respond-async, wait=60", 60),
        ("WAIT = 1", 1),
        ("return=minimal", None),
    ],
)
def test_prefer_wait(header: str | None, expected: int | None) -> None:
    assert parse_prefer_wait(header) == expected


@pytest.mark.parametrize("header", ["wait=0", "wait=61", "wait=1.5", "wait=", "wait=x"])
def test_bad_prefer_wait_is_422(header: str) -> None:
    with pytest.raises(ApiProblem) as caught:
        parse_prefer_wait(header)
    assert caught.value.status == 422


def test_last_event_id() -> None:
    event_id = new_id("evt")
    assert parse_last_event_id(event_id) == event_id
    assert parse_last_event_id(None) is None
    with pytest.raises(ApiProblem):
        parse_last_event_id("evt_' OR 1=1")


def test_sse_message_format() -> None:
    event = JobEvent(id="evt_1", type="job.created", detail={"a": 1}, at=None, terminal=False)
    assert format_event(event) == (
        'id: evt_1\nevent: job.created\ndata: {"id":"evt_1","type":"job.created",'
        '"at":null,"detail":{"a":1}}\n\n'
    )


def test_rate_limit_headers() -> None:
    allowed = Decision(True, 100, 2, 42, 0.0, 1.2)
    assert allowed.headers() == {
        "RateLimit-Limit": "100",
        "RateLimit-Remaining": "42",
        "RateLimit-Reset": "2",
        "RateLimit-Policy": "100;w=2",
    }
    refused = Decision(False, 4, 2, 0, 0.2, 2.0)
    assert refused.headers()["Retry-After"] == "1"


def test_celery_style_redis_urls_are_translated() -> None:
    assert redis_client_url("redis+socket:///tmp/r.sock") == "unix:///tmp/r.sock"
    assert redis_client_url("redis://h:6379/2") == "redis://h:6379/2"
