"""Pure helpers: poll back-off, retry back-off and policy, catalog lookups, cursors, error
field paths."""

from __future__ import annotations

import pytest

from api.errors import ApiProblem, field_path
from api.jobs import decode_cursor, encode_cursor
from editqueue.catalog import resolve_model
from editqueue.ids import new_id
from editqueue.jobs import routing
from editqueue.jobs.pipeline import poll_delay, retry_delay
from editqueue.providers.base import ProviderError


def test_poll_delay_backs_off_with_age() -> None:
    assert poll_delay(0) == 2.0
    assert poll_delay(45) == 5.0
    assert poll_delay(600) == 15.0
    assert poll_delay(0, scale=0.5) == 1.0


def test_retry_delay_grows_is_capped_and_honours_retry_after() -> None:
    assert 1.6 <= retry_delay(1, None) <= 2.4
    assert retry_delay(20, None) <= 72.0
    assert retry_delay(1, 30.0) == 30.0


@pytest.mark.parametrize(
    ("code", "retryable", "scope"),
    [
        ("rate_limited", True, "free"),
        ("provider_unavailable", True, "any"),
        ("timeout", True, "any"),
        ("provider_error", False, "elsewhere"),
        ("provider_unavailable", False, "elsewhere"),
        ("content_rejected", False, "never"),
        ("invalid_request", False, "never"),
        ("invalid_image", False, "never"),
    ],
)
def test_retry_scope_follows_the_adapters_mapping(code: str, retryable: bool, scope: str) -> None:
    error = ProviderError(code, "the vendor failed", provider="ark", retryable=retryable)
    assert routing.retry_scope(error) == scope


def test_a_vendor_that_failed_a_job_for_good_is_not_eligible_again() -> None:
    attempts = [
        {"provider": "kie", "outcome": "failed", "retryable": False},
        {"provider": "ark", "outcome": "failed", "retryable": True},
        {"provider": "cometapi", "outcome": "rate_limited", "retryable": True},
        {"provider": "acedata", "outcome": "failed"},  # logged before the flag existed
    ]
    candidates = ["kie", "ark", "cometapi", "acedata"]
    assert routing.eligible(candidates, attempts) == ["ark", "cometapi", "acedata"]
    # Among those left, the one this job failed on least (a 429 is no failure) goes next.
    choice = routing.choose(routing.eligible(candidates, attempts), attempts, lambda p: 0)
    assert choice.provider == "cometapi"


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("seededit-3.0", "seededit-3.0"),
        ("doubao-seededit-3-0-i2i-250628", "seededit-3.0"),
        ("spark_edit_3_0_i2i", "seededit-3.0"),
        ("bytedance/seedream-v4-edit", "seedream-4.0-edit"),
        ("doubao-seedream-4-0-250828", "seedream-4.0-edit"),
        ("seedream-4-0-250828", "seedream-4.0-edit"),
    ],
)
def test_aliases_resolve(name: str, canonical: str) -> None:
    model = resolve_model(name)
    assert model is not None and model.id == canonical


def test_unknown_model_is_none() -> None:
    assert resolve_model("gpt-image-1") is None


def test_cursor_round_trip_and_rejection() -> None:
    job_id = new_id("job")
    assert decode_cursor(encode_cursor(job_id)) == job_id
    with pytest.raises(ApiProblem):
        decode_cursor(encode_cursor("evt_01ABC"))


def test_field_paths() -> None:
    assert field_path(("images", 0)) == "images[0]"
    assert field_path(("metadata", "k")) == "metadata.k"
    assert field_path(("prompt",), "jobs[3].") == "jobs[3].prompt"
    assert field_path(()) == "body"
