"""The price table: shipped defaults, EDITQUEUE_PRICES overrides, estimates and their errors."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from editqueue.config import ConfigError, load_settings
from editqueue.spend import prices
from editqueue.spend.prices import (
    estimate,
    max_estimate,
    price_of,
    price_table,
    requested_megapixels,
)


def test_shipped_defaults_are_sourced_and_unknown_prices_are_absent() -> None:
    settings = load_settings()
    table = price_table(settings)
    assert table == prices.SHIPPED_PRICES
    for price in table.values():
        assert price.source.startswith("https://") and price.as_of
    # SeedEdit's price at Vtrix is not on any public page: unknown, not zero.
    assert price_of(settings, "vtrix", "seededit-3.0") is None
    assert estimate(settings, "vtrix", "seededit-3.0", 1) is None


def test_inline_json_overrides_by_alias_and_a_file_works_too(tmp_path: Path) -> None:
    raw = {
        "vtrix/spark_edit_3_0_i2i": {"per_image": "0.025"},
        "ark/doubao-seedream-4-0-250828": {"per_megapixel": 0.01, "as_of": "2026-01-01"},
    }
    inline = load_settings(prices=json.dumps(raw))
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(raw))
    from_file = load_settings(prices=str(path))
    for settings in (inline, from_file):
        vtrix = price_of(settings, "vtrix", "seededit-3.0")
        assert vtrix is not None and vtrix.per_image == Decimal("0.025")
        assert vtrix.source == "configured" and vtrix.currency == "USD"
        ark = price_of(settings, "ark", "seedream-4.0-edit")
        # The configured entry replaces the shipped per-image price entirely.
        assert ark is not None and (ark.per_image, ark.per_megapixel) == (None, Decimal("0.01"))
        assert ark.as_of == "2026-01-01"


def test_null_makes_a_shipped_price_unknown() -> None:
    settings = load_settings(prices='{"ark/seedream-4.0-edit": null}')
    assert price_of(settings, "ark", "seedream-4.0-edit") is None


def test_estimates_per_image_and_per_megapixel() -> None:
    settings = load_settings(
        prices=json.dumps(
            {
                "vtrix/seededit-3.0": {"per_image": "0.03"},
                "ark/seededit-3.0": {"per_image": "0.01", "per_megapixel": "0.02"},
                "acedata/seededit-3.0": {"per_megapixel": "0.5"},
            }
        )
    )
    assert estimate(settings, "vtrix", "seededit-3.0", 3) == Decimal("0.090000")
    assert estimate(settings, "ark", "seededit-3.0", 2, 2.0) == Decimal("0.100000")
    # No size known: 1024×1024 is assumed.
    assert estimate(settings, "acedata", "seededit-3.0", 1) == Decimal("0.524288")
    assert estimate(settings, "vtrix", "no-such-model", 1) is None
    assert estimate(settings, "vtrix", "seededit-3.0", 0) == Decimal("0.000000")


def test_max_estimate_takes_the_dearest_known_vendor() -> None:
    settings = load_settings(
        prices='{"vtrix/seededit-3.0": {"per_image": "0.03"},'
        ' "ark/seededit-3.0": {"per_image": 0.05}}'
    )
    routes = ["ark", "vtrix", "cometapi"]
    assert max_estimate(settings, "seededit-3.0", routes, 2) == Decimal("0.100000")
    assert max_estimate(settings, "seededit-3.0", ["cometapi", "acedata"], 1) is None


def test_the_table_is_cached_per_settings_object() -> None:
    settings = load_settings(prices='{"vtrix/seededit-3.0": {"per_image": "0.03"}}')
    assert price_table(settings) is price_table(settings)
    other = load_settings(prices='{"vtrix/seededit-3.0": {"per_image": "0.04"}}')
    assert price_table(other) is not price_table(settings)
    assert price_table(other)[("vtrix", "seededit-3.0")].per_image == Decimal("0.04")


def test_shipped_usd_prices_do_not_apply_under_another_currency() -> None:
    settings = load_settings(currency="EUR", prices='{"vtrix/seededit-3.0": {"per_image": "1"}}')
    assert price_of(settings, "ark", "seedream-4.0-edit") is None
    price = price_of(settings, "vtrix", "seededit-3.0")
    assert price is not None and price.currency == "EUR"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        ("/no/such/prices.json", "cannot read"),
        ("[1, 2]", "expected a JSON object"),
        ('{"seededit-3.0": {"per_image": 1}}', 'expected "vendor/model"'),
        ('{"nobody/seededit-3.0": {"per_image": 1}}', 'expected "vendor/model"'),
        ('{"vtrix/nope": {"per_image": 1}}', "unknown model 'nope'"),
        ('{"vtrix/seededit-3.0": 0.03}', "expected an object"),
        ('{"vtrix/seededit-3.0": {}}', "needs per_image and/or per_megapixel"),
        ('{"vtrix/seededit-3.0": {"per_imgae": 1}}', "unknown field(s) per_imgae"),
        ('{"vtrix/seededit-3.0": {"per_image": "cheap"}}', "is not a decimal number"),
        ('{"vtrix/seededit-3.0": {"per_image": -1}}', "finite amount ≥ 0"),
        ('{"vtrix/seededit-3.0": {"per_image": "NaN"}}', "finite amount ≥ 0"),
        ('{"vtrix/seededit-3.0": {"per_image": true}}', "must be a decimal number"),
        ('{"vtrix/seededit-3.0": {"per_image": 1, "currency": "EUR"}}', "not EDITQUEUE_CURRENCY"),
    ],
)
def test_bad_content_stops_loading_with_a_clear_message(raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(prices=raw)
    assert "EDITQUEUE_PRICES" in str(caught.value) and message in str(caught.value)


@pytest.mark.parametrize(
    ("params", "megapixels"),
    [
        ({"size": "2048x1024"}, 2.097152),
        ({"size": "adaptive"}, None),
        ({"resolution": "2k"}, 4.194304),
        ({"size": "axb", "resolution": "1K"}, 1.048576),
        ({}, None),
    ],
)
def test_requested_megapixels(params: dict, megapixels: float | None) -> None:
    assert requested_megapixels(params) == megapixels
