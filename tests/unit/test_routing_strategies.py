"""Routing strategies (editqueue/jobs/routing.py): how each orders a job's candidates."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import get_args

import pytest
from pydantic import ValidationError

from editqueue.config import ROUTING_STRATEGIES, ConfigError, Settings, load_settings
from editqueue.jobs import routing
from editqueue.providers import fake
from editqueue.providers.fake import FakeProvider
from editqueue.providers.limits import LATENCY_SAMPLES, LATENCY_WINDOW, Limit, LocalLimits
from editqueue.schemas import JobCreate, RoutingStrategy
from tests.unit.provider_fakes import Harness, attempt_log, make_harness

PRICES = json.dumps(
    {
        "ark/seededit-3.0": {"per_image": "0.04"},
        "vtrix/seededit-3.0": {"per_image": "0.03"},
        "acedata/seededit-3.0": {"per_megapixel": "0.02"},
    }
)


def no_cooldown(name: str) -> float:
    return 0.0


def failed(provider: str, *, retryable: bool = True) -> dict:
    return {"provider": provider, "outcome": "failed", "retryable": retryable}


class Always(random.Random):
    """An rng whose draws always come out as `value` (randrange) / first choice."""

    def __init__(self, value: int) -> None:
        super().__init__(0)
        self.value = value

    def randrange(self, *args, **kwargs) -> int:  # type: ignore[override]
        return self.value


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- which strategy --------------------------------------------------------------------------


def test_strategy_names_are_the_same_in_config_and_in_the_api_schema() -> None:
    assert get_args(RoutingStrategy) == ROUTING_STRATEGIES


def test_the_jobs_own_strategy_wins_then_the_models_then_weights_then_ordered() -> None:
    settings = Settings(
        routing="seededit-3.0=cheapest", routes="seedream-4.0-edit=kie:3,ark:1;seededit-3.0=ark"
    )
    assert routing.strategy_for(settings, "seededit-3.0", "fastest") == "fastest"
    assert routing.strategy_for(settings, "seededit-3.0", None) == "cheapest"
    # an alias resolves to the canonical id the settings are keyed by
    assert routing.strategy_for(settings, "seededit-3-0-i2i-250628", None) == "cheapest"
    assert routing.strategy_for(settings, "seedream-4.0-edit", None) == "weighted"
    assert routing.strategy_for(Settings(), "seededit-3.0", None) == "ordered"
    both = Settings(routing="seededit-3.0=ordered", routes="seededit-3.0=vtrix:80,ark:20")
    assert routing.strategy_for(both, "seededit-3.0", None) == "ordered"


def test_weighted_routes_parse_into_an_order_and_weights() -> None:
    settings = Settings(routes="seededit-3.0=vtrix:80,ark:20;seedream-4.0-edit=kie,ark")
    assert settings.routes == {
        "seededit-3.0": ("vtrix", "ark"),
        "seedream-4.0-edit": ("kie", "ark"),
    }
    assert settings.route_weights == {"seededit-3.0": {"vtrix": 80, "ark": 20}}
    assert Settings(routes="seededit-3.0=ark,vtrix").route_weights == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("seededit-3.0=vtrix:80,ark", "every provider a weight"),
        ("seededit-3.0=vtrix:0,ark:0", "above 0"),
        ("seededit-3.0=vtrix:-1,ark:2", "whole number"),
        ("seededit-3.0=vtrix:x", "whole number"),
        ("seededit-3.0=nobody:1", "expected MODEL="),
        ("seededit-3.0=ark,ark", "expected MODEL="),
    ],
)
def test_bad_weighted_routes_stop_the_process_naming_the_variable(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(routes=value)
    assert "EDITQUEUE_ROUTES" in str(caught.value) and message in str(caught.value)


def test_the_api_takes_known_strategies_only() -> None:
    body = {"model": "seededit-3.0", "prompt": "p", "image": "https://x.test/a.png"}
    assert JobCreate(**body, routing="least_busy").routing == "least_busy"
    with pytest.raises(ValidationError) as caught:
        JobCreate(**body, routing="random")
    assert caught.value.errors()[0]["loc"] == ("routing",)


# -- ordered and the failover rules every strategy keeps -----------------------------------


def test_ordered_keeps_the_route_order() -> None:
    ranking = routing.rank(
        "ordered", ["vtrix", "ark"], settings=Settings(), limits=LocalLimits({}), model_id="x"
    )
    assert ranking.order == ["vtrix", "ark"]
    assert ranking.reason("vtrix") == "ordered: route order"


def test_a_vendor_that_failed_the_job_goes_after_the_strategys_choice() -> None:
    ranking = routing.by_price(["ark", "vtrix"], {"ark": Decimal("0.04"), "vtrix": Decimal("0.03")})
    assert ranking.order == ["vtrix", "ark"]
    choice = routing.choose(ranking.order, [failed("vtrix")], no_cooldown)
    assert choice.provider == "ark"
    assert "passed over vtrix" in ranking.reason("ark")
    # refused for good: not a candidate at all
    assert routing.eligible(ranking.order, [failed("vtrix", retryable=False)]) == ["ark"]


def test_a_cooling_vendor_is_skipped_whatever_the_strategy_prefers() -> None:
    limits = LocalLimits({})
    limits.cool_down("vtrix", 30)
    ranking = routing.by_price(["ark", "vtrix"], {"ark": Decimal("0.04"), "vtrix": Decimal("0.03")})
    assert routing.choose(ranking.order, [], limits.cooldown_left).provider == "ark"
    limits.cool_down("ark", 10)
    waiting = routing.choose(ranking.order, [], limits.cooldown_left)
    assert waiting.provider is None and 9 < waiting.wait <= 10


# -- cheapest --------------------------------------------------------------------------------


def test_cheapest_orders_by_the_price_table_unknown_prices_last_in_route_order() -> None:
    settings = Settings(prices=PRICES)
    candidates = ["cometapi", "ark", "acedata", "vtrix"]
    ranking = routing.rank(
        "cheapest",
        candidates,
        settings=settings,
        limits=LocalLimits({}),
        model_id="seededit-3.0",
        params={"size": "adaptive"},
    )
    # acedata: 0.02/Mpx × the default 1.048576 Mpx ≈ 0.021
    assert ranking.order == ["acedata", "vtrix", "ark", "cometapi"]
    assert ranking.facts["cometapi"] == "price unknown"
    assert ranking.reason("vtrix").startswith("cheapest: 0.03 USD/image vs acedata 0.020972")
    assert "ark 0.04 USD/image" in ranking.reason("vtrix")


def test_cheapest_breaks_ties_by_route_order_and_falls_back_to_it() -> None:
    same = {"ark": Decimal("0.03"), "vtrix": Decimal("0.03")}
    assert routing.by_price(["vtrix", "ark"], same).order == ["vtrix", "ark"]
    unknown = routing.by_price(["vtrix", "ark"], {})
    assert unknown.order == ["vtrix", "ark"]
    assert unknown.reason("vtrix") == "cheapest: no vendor has a known price; route order"


def test_cheapest_prices_the_size_the_job_asked_for() -> None:
    prices = json.dumps(
        {
            "ark/seedream-4.0-edit": {"per_image": "0.03"},
            "kie/seedream-4.0-edit": {"per_megapixel": "0.01"},
        }
    )
    settings = Settings(prices=prices)
    small = routing.rank(
        "cheapest",
        ["ark", "kie"],
        settings=settings,
        limits=LocalLimits({}),
        model_id="seedream-4.0-edit",
        params={"size": "1024x1024"},
    )
    big = routing.rank(
        "cheapest",
        ["ark", "kie"],
        settings=settings,
        limits=LocalLimits({}),
        model_id="seedream-4.0-edit",
        params={"size": "4096x4096"},
    )
    assert small.order == ["kie", "ark"] and big.order == ["ark", "kie"]


# -- fastest ---------------------------------------------------------------------------------


def test_fastest_goes_to_the_lowest_median_once_measured() -> None:
    limits = LocalLimits({})
    for seconds in (0.9, 1.0, 5.0):
        limits.record_latency("ark", seconds)
    for seconds in (0.2, 0.3, 9.0, 9.0):
        limits.record_latency("vtrix", seconds)
    ranking = routing.rank(
        "fastest", ["ark", "vtrix"], settings=Settings(), limits=limits, model_id="x"
    )
    assert ranking.order == ["ark", "vtrix"]  # median 1.0 beats median 4.65
    assert ranking.reason("ark") == "fastest: p50 1.000 s vs vtrix p50 4.650 s"


def test_fastest_uses_the_route_order_while_nothing_is_measured() -> None:
    limits = LocalLimits({})
    limits.record_latency("vtrix", 0.1)  # fewer than MIN_LATENCY_SAMPLES: still unmeasured
    ranking = routing.by_latency(
        ["ark", "vtrix"], limits.latency_samples(["ark", "vtrix"]), Always(0)
    )
    assert ranking.order == ["ark", "vtrix"]
    assert ranking.reason("ark") == "fastest: no vendor measured yet; route order"


def test_fastest_sends_one_job_in_ten_to_unmeasured_vendors() -> None:
    samples = {"ark": [1.0, 1.0, 1.0], "vtrix": []}
    explored = routing.by_latency(["ark", "vtrix"], samples, Always(0))
    assert explored.order == ["vtrix", "ark"]
    assert explored.reason("vtrix") == "fastest: exploring unmeasured vendors"
    assert routing.by_latency(["ark", "vtrix"], samples, Always(1)).order == ["ark", "vtrix"]
    rng = random.Random(7)
    firsts = [routing.by_latency(["ark", "vtrix"], samples, rng).order[0] for _ in range(2000)]
    assert 120 < firsts.count("vtrix") < 290  # ≈ 200


def test_latency_samples_slide_by_count_and_by_age() -> None:
    clock = Clock()
    limits = LocalLimits({}, clock=clock)
    for _ in range(LATENCY_SAMPLES):
        limits.record_latency("ark", 9.0)
    for _ in range(3):
        limits.record_latency("ark", 0.5)
    samples = limits.latency_samples(["ark"])["ark"]
    assert len(samples) == LATENCY_SAMPLES and samples[:3] == [0.5, 0.5, 0.5]
    clock.now += LATENCY_WINDOW + 1
    assert limits.latency_samples(["ark", "vtrix"]) == {"ark": [], "vtrix": []}
    assert routing.p50([]) is None and routing.p50([3.0, 1.0, 2.0]) == 2.0


# -- least_busy ------------------------------------------------------------------------------


def test_least_busy_prefers_the_most_free_slots_and_unlimited_most() -> None:
    limits = LocalLimits({"ark": Limit(max_concurrent=4), "vtrix": Limit(max_concurrent=2)})
    limits.acquire_slot("ark", "job-1", 60)
    ranking = routing.rank(
        "least_busy", ["vtrix", "ark"], settings=Settings(), limits=limits, model_id="x"
    )
    assert ranking.order == ["ark", "vtrix"]  # 3 free beats 2 free
    assert ranking.reason("ark") == "least_busy: 3 of 4 slots free vs vtrix 2 of 2 slots free"
    limits.acquire_slot("ark", "job-2", 60)
    tie = routing.rank(
        "least_busy", ["vtrix", "ark"], settings=Settings(), limits=limits, model_id="x"
    )
    assert tie.order == ["vtrix", "ark"]  # 2 and 2: route order
    with_unlimited = routing.rank(
        "least_busy", ["vtrix", "ark", "kie"], settings=Settings(), limits=limits, model_id="x"
    )
    assert with_unlimited.order == ["kie", "vtrix", "ark"]
    assert with_unlimited.facts["kie"] == "unlimited"


def test_least_busy_counts_released_and_expired_slots_as_free() -> None:
    clock = Clock()
    limits = LocalLimits({"ark": Limit(max_concurrent=2)}, clock=clock)
    limits.acquire_slot("ark", "a", 10)
    limits.acquire_slot("ark", "b", 100)
    assert limits.slot_usage(["ark", "kie"]) == {"ark": (2, 2), "kie": (0, None)}
    clock.now += 11
    assert limits.slot_usage(["ark"]) == {"ark": (1, 2)}
    limits.release_slot("ark", "b")
    assert limits.slot_usage(["ark"]) == {"ark": (0, 2)}


# -- weighted --------------------------------------------------------------------------------


def test_weighted_splits_by_the_configured_weights() -> None:
    settings = Settings(routes="seededit-3.0=vtrix:80,ark:20")
    rng = random.Random(1)
    firsts = [
        routing.rank(
            "weighted",
            ["vtrix", "ark"],
            settings=settings,
            limits=LocalLimits({}),
            model_id="seededit-3.0",
            rng=rng,
        ).order[0]
        for _ in range(4000)
    ]
    # binomial: 3200 ± 4σ (σ ≈ 25.3)
    assert abs(firsts.count("vtrix") - 3200) < 102


def test_weighted_puts_zero_weights_last_and_without_weights_splits_evenly() -> None:
    ranking = routing.by_weight(
        ["ark", "vtrix", "kie"], {"ark": 0, "vtrix": 5, "kie": 5}, Always(0)
    )
    assert ranking.order[-1] == "ark" and set(ranking.order) == {"ark", "vtrix", "kie"}
    assert ranking.facts["vtrix"] == "weight 5 of 10"
    rng = random.Random(3)
    firsts = [routing.by_weight(["ark", "vtrix"], {}, rng).order[0] for _ in range(2000)]
    assert abs(firsts.count("ark") - 1000) < 90  # 4σ ≈ 89
    # a vendor of the weights that is not a candidate (not configured) is simply absent
    assert routing.by_weight(["ark"], {"ark": 1, "vtrix": 99}, rng).order == ["ark"]


# -- through the pipeline ----------------------------------------------------------------------


@pytest.fixture
def priced(sessions) -> Harness:
    """ark then vtrix on the route, vtrix the cheaper."""
    vendors = {"ark": FakeProvider("ark"), "vtrix": FakeProvider("vtrix")}
    return make_harness(sessions, vendors, prices=PRICES)


def test_a_cheapest_job_goes_to_the_cheaper_vendor_and_says_why(priced: Harness) -> None:
    job_id = priced.new_job()
    priced.set_row(job_id, routing="cheapest")
    job = priced.submit(job_id)
    assert (job.status, job.provider) == ("succeeded", "vtrix")
    record = job.usage["routing"]
    assert record["strategy"] == "cheapest" and record["provider"] == "vtrix"
    assert record["reason"] == "cheapest: 0.03 USD/image vs ark 0.04 USD/image"
    # an ordered job of the same model keeps the route order
    other = priced.submit(priced.new_job())
    assert other.provider == "ark" and other.usage["routing"]["strategy"] == "ordered"


def test_under_cheapest_a_failing_cheapest_vendor_fails_over(priced: Harness) -> None:
    priced.vendor("vtrix").script(submit=[fake.unavailable(provider="vtrix")])
    job_id = priced.new_job()
    priced.set_row(job_id, routing="cheapest")
    job = priced.run(job_id)
    assert job.status == "succeeded" and job.provider == "ark"
    assert [(a["provider"], a["outcome"]) for a in attempt_log(job)] == [
        ("vtrix", "failed"),
        ("ark", "succeeded"),
    ]
    assert job.usage["routing"]["provider"] == "ark"
    assert "passed over vtrix" in job.usage["routing"]["reason"]


def test_a_failed_job_still_records_why_its_vendor_was_chosen(sessions) -> None:
    h = make_harness(sessions, {"vtrix": FakeProvider("vtrix")}, prices=PRICES, max_attempts=1)
    h.vendor("vtrix").script(submit=[fake.unavailable(provider="vtrix")])
    job_id = h.new_job()
    h.set_row(job_id, routing="cheapest")
    job = h.run(job_id)
    assert job.status == "failed"
    assert job.usage["routing"]["provider"] == "vtrix"


def test_a_success_records_one_latency_sample_and_fastest_uses_it(sessions) -> None:
    h = make_harness(
        sessions,
        {"ark": FakeProvider("ark"), "vtrix": FakeProvider("vtrix")},
        routing="seededit-3.0=fastest",
    )
    h.vendor("ark").script(submit=[fake.task("t-1")])
    first = h.run(h.new_job())
    assert first.provider == "ark"  # nothing measured: route order
    assert first.usage["routing"]["reason"] == "fastest: no vendor measured yet; route order"
    samples = h.limits.latency_samples(["ark", "vtrix"])
    assert len(samples["ark"]) == 1 and samples["vtrix"] == []
    for seconds in (5.0, 5.0):
        h.limits.record_latency("ark", seconds)
    for seconds in (0.1, 0.1, 0.1):
        h.limits.record_latency("vtrix", seconds)
    assert h.submit(h.new_job()).provider == "vtrix"


def test_least_busy_through_the_pipeline_takes_the_emptier_vendor(sessions) -> None:
    h = make_harness(
        sessions,
        {"ark": FakeProvider("ark"), "vtrix": FakeProvider("vtrix")},
        routing="seededit-3.0=least_busy",
        ark_max_concurrent=2,
        vtrix_max_concurrent=3,
    )
    h.vendor("vtrix").script(submit=[fake.task("t-1"), fake.task("t-2")])
    h.vendor("ark").script(submit=[fake.task("t-3")])  # tasks hold their slots while waiting
    assert h.submit(h.new_job()).provider == "vtrix"  # 3 free beats 2
    assert h.submit(h.new_job()).provider == "ark"  # 2 and 2: route order
    job = h.submit(h.new_job())  # ark 1 free, vtrix 2
    assert job.provider == "vtrix"
    assert job.usage["routing"]["reason"] == (
        "least_busy: 2 of 3 slots free vs ark 1 of 2 slots free"
    )
