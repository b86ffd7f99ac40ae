"""Which vendor a job's next attempt goes to (editqueue/jobs/routing.py)."""

from __future__ import annotations

from editqueue.config import Settings
from editqueue.jobs import routing

ALL_KEYS = {f"{p}_api_key": "k" for p in ("ark", "vtrix", "cometapi", "acedata", "kie")}


def everywhere(name: str) -> bool:
    return True


def failed(provider: str, *, retryable: bool = True) -> dict:
    return {"provider": provider, "outcome": "failed", "retryable": retryable}


def test_the_route_is_the_models_vendor_list_limited_to_configured_ones() -> None:
    settings = Settings(ark_api_key="k", acedata_api_key="k")
    assert routing.route("seededit-3.0", None, settings, everywhere) == ["ark", "acedata"]


def test_an_alias_routes_like_its_model_and_an_unknown_model_nowhere() -> None:
    settings = Settings(**ALL_KEYS)
    assert routing.route("seededit-3-0-i2i-250628", None, settings, everywhere)[0] == "ark"
    assert routing.route("no-such-model", None, settings, everywhere) == []


def test_a_configured_route_replaces_the_catalog_order() -> None:
    settings = Settings(**ALL_KEYS, routes="seededit-3.0=vtrix,ark")
    assert routing.route("seededit-3.0", None, settings, everywhere) == ["vtrix", "ark"]
    assert routing.route("seedream-4.0-edit", None, settings, everywhere)[0] == "kie"


def test_a_pin_is_the_whole_route_and_sandbox_pins_nothing() -> None:
    settings = Settings(**ALL_KEYS)
    assert routing.route("seededit-3.0", "cometapi", settings, everywhere) == ["cometapi"]
    assert routing.route("seededit-3.0", "sandbox", settings, everywhere)[0] == "ark"
    assert routing.route("seededit-3.0", "ark", Settings(vtrix_api_key="k"), everywhere) == []


def test_vendors_whose_adapter_cannot_be_built_are_left_out() -> None:
    settings = Settings(**ALL_KEYS)
    route = routing.route("seededit-3.0", None, settings, lambda p: p != "ark")
    assert route == ["vtrix", "cometapi", "acedata"]


def test_failures_are_counted_per_vendor_and_rate_limits_are_not_failures() -> None:
    attempts = [
        failed("ark"),
        failed("ark"),
        {"provider": "vtrix", "outcome": "rate_limited"},
        {"provider": None, "outcome": "failed"},
        {"provider": "vtrix", "outcome": "succeeded"},
    ]
    assert routing.failures_by_provider(attempts) == {"ark": 2}


def test_choose_prefers_the_vendor_this_job_failed_on_least_then_route_order() -> None:
    no_cooldown = lambda p: 0.0  # noqa: E731
    assert routing.choose(["ark", "vtrix"], [], no_cooldown) == routing.Choice("ark")
    assert routing.choose(["ark", "vtrix"], [failed("ark")], no_cooldown).provider == "vtrix"
    both = [failed("ark"), failed("vtrix")]
    assert routing.choose(["ark", "vtrix"], both, no_cooldown).provider == "ark"


def test_choose_skips_vendors_cooling_down_and_waits_when_all_are() -> None:
    cooling = {"ark": 12.0, "vtrix": 0.0}
    assert routing.choose(["ark", "vtrix"], [], cooling.__getitem__).provider == "vtrix"
    cooling["vtrix"] = 4.0
    assert routing.choose(["ark", "vtrix"], [], cooling.__getitem__) == routing.Choice(None, 4.0)
    assert routing.choose([], [], cooling.__getitem__) == routing.Choice(None)


# retry_scope is covered by tests/unit/test_pure_logic.py.


def test_only_failures_for_good_make_a_vendor_ineligible() -> None:
    attempts = [failed("ark", retryable=False), failed("vtrix", retryable=True)]
    assert routing.eligible(["ark", "vtrix", "kie"], attempts) == ["vtrix", "kie"]
