"""The price table per (vendor, model): shipped defaults merged with EDITQUEUE_PRICES."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from editqueue.catalog import resolve_model
from editqueue.config import PROVIDERS, ConfigError, Settings

# Amounts are stored as NUMERIC(18,6) (jobs.cost_estimate, tenant_spend).
AMOUNT_QUANTUM = Decimal("0.000001")
# What one output image is assumed to measure when a per-megapixel price meets a job whose
# output size is not known: 1024×1024, the catalog's default ("1K"; SeedEdit's adaptive
# sizes are all close to it).
DEFAULT_MEGAPIXELS = 1.048576
_RESOLUTION_MEGAPIXELS = {"1K": 1.048576, "2K": 4.194304, "4K": 16.777216}
_PRICE_FIELDS = ("per_image", "per_megapixel")
_ENTRY_FIELDS = frozenset({*_PRICE_FIELDS, "currency", "source", "as_of"})


@dataclass(frozen=True)
class Price:
    """What one vendor charges for one model's output, and where that figure comes from."""

    per_image: Decimal | None
    per_megapixel: Decimal | None
    currency: str
    source: str  # a URL, or "configured"
    as_of: str  # ISO date the figure was read or configured


# Only prices read on a vendor's own public page (docs/vendors/prices.md says where and
# when). A vendor/model missing here has an unknown price: never assume zero.
SHIPPED_PRICES: dict[tuple[str, str], Price] = {
    ("ark", "seedream-4.0-edit"): Price(
        per_image=Decimal("0.03"),
        per_megapixel=None,
        currency="USD",
        source="https://docs.byteplus.com/en/docs/Byteplus_LAS/Large_model_billing",
        as_of="2026-12-02",
    ),
}

_cache_lock = threading.Lock()
# id(settings) -> (settings, table); the settings object is kept so a recycled id never
# returns another object's table.
_cache: dict[int, tuple[Settings, dict[tuple[str, str], Price]]] = {}
_CACHE_MAX = 64


def price_table(settings: Settings) -> dict[tuple[str, str], Price]:
    """Shipped defaults merged with EDITQUEUE_PRICES; raises ConfigError on bad content."""
    with _cache_lock:
        hit = _cache.get(id(settings))
        if hit is not None and hit[0] is settings:
            return hit[1]
    table = _build(settings)
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[id(settings)] = (settings, table)
    return table


def check_prices(settings: Settings) -> None:
    """Validate EDITQUEUE_PRICES (called where settings are loaded, so errors show at start)."""
    price_table(settings)


def price_of(settings: Settings, vendor: str, model_id: str) -> Price | None:
    """The price of a model (id or alias) at a vendor, or None when unknown."""
    model = resolve_model(model_id)
    if model is None:
        return None
    return price_table(settings).get((vendor, model.id))


def estimate(
    settings: Settings,
    vendor: str,
    model_id: str,
    images: int,
    megapixels: float | None = None,
) -> Decimal | None:
    """Cost of one attempt producing `images` outputs of `megapixels` each; None if unknown."""
    price = price_of(settings, vendor, model_id)
    if price is None:
        return None
    count = Decimal(max(images, 0))
    amount = Decimal(0)
    if price.per_image is not None:
        amount += price.per_image * count
    if price.per_megapixel is not None:
        size = Decimal(str(megapixels if megapixels is not None else DEFAULT_MEGAPIXELS))
        amount += price.per_megapixel * size * count
    return quantize(amount)


def max_estimate(
    settings: Settings,
    model_id: str,
    vendors: Iterable[str],
    images: int,
    megapixels: float | None = None,
) -> Decimal | None:
    """The dearest known estimate among the vendors a job may use; None if none is known."""
    known = [
        amount
        for vendor in vendors
        if (amount := estimate(settings, vendor, model_id, images, megapixels)) is not None
    ]
    return max(known) if known else None


def requested_megapixels(params: Mapping[str, Any]) -> float | None:
    """Megapixels per output image a job asked for ("WxH" size or 1K/2K/4K), if it says."""
    size = params.get("size")
    if isinstance(size, str) and "x" in size.lower():
        width, _, height = size.lower().partition("x")
        if width.strip().isdigit() and height.strip().isdigit():
            return int(width) * int(height) / 1_000_000
    resolution = params.get("resolution")
    if isinstance(resolution, str):
        return _RESOLUTION_MEGAPIXELS.get(resolution.upper())
    return None


def quantize(amount: Decimal) -> Decimal:
    """An amount rounded to the stored precision (6 places)."""
    return amount.quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_UP)


def money(amount: Decimal) -> str:
    """An amount as the API shows it: a decimal string with the stored 6 places."""
    return str(quantize(amount))


def _build(settings: Settings) -> dict[tuple[str, str], Price]:
    # Shipped prices are in USD; under another currency they cannot be used (no rates).
    table = {key: p for key, p in SHIPPED_PRICES.items() if p.currency == settings.currency}
    for key, price in _configured(settings).items():
        if price is None:
            table.pop(key, None)
        else:
            table[key] = price
    return table


def _configured(settings: Settings) -> dict[tuple[str, str], Price | None]:
    raw = (settings.prices or "").strip()
    if not raw:
        return {}
    data = _load_json(raw)
    if not isinstance(data, dict):
        raise _bad('expected a JSON object of "vendor/model": {"per_image": "0.03"}')
    today = datetime.now(UTC).date().isoformat()
    out: dict[tuple[str, str], Price | None] = {}
    for name, entry in data.items():
        key = _key(str(name))
        # null makes a shipped price unknown again.
        out[key] = None if entry is None else _entry(str(name), entry, settings.currency, today)
    return out


def _load_json(raw: str) -> Any:
    if raw.startswith(("{", "[")):  # inline JSON; anything else names a file
        text, where = raw, "inline JSON"
    else:
        path = Path(raw).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise _bad(f"cannot read {path}: {exc.strerror or exc}") from None
        where = str(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _key(name: str) -> tuple[str, str]:
    vendor, sep, model_name = name.partition("/")
    vendor = vendor.strip().lower()
    if not sep or vendor not in PROVIDERS:
        raise _bad(f'{name!r}: expected "vendor/model" with vendor one of {", ".join(PROVIDERS)}')
    model = resolve_model(model_name.strip())
    if model is None:
        raise _bad(f"{name!r}: unknown model {model_name.strip()!r}")
    return vendor, model.id


def _entry(name: str, entry: Any, currency: str, today: str) -> Price:
    if not isinstance(entry, dict):
        raise _bad(f'{name!r}: expected an object such as {{"per_image": "0.03"}} or null')
    unknown = sorted(set(entry) - _ENTRY_FIELDS)
    if unknown:
        raise _bad(f"{name!r}: unknown field(s) {', '.join(unknown)}")
    amounts = {field: _amount(name, field, entry.get(field)) for field in _PRICE_FIELDS}
    if all(value is None for value in amounts.values()):
        raise _bad(f"{name!r}: needs per_image and/or per_megapixel")
    entry_currency = str(entry.get("currency") or currency).upper()
    if entry_currency != currency:
        raise _bad(f"{name!r}: currency {entry_currency} is not EDITQUEUE_CURRENCY={currency}")
    return Price(
        per_image=amounts["per_image"],
        per_megapixel=amounts["per_megapixel"],
        currency=currency,
        source=str(entry.get("source") or "configured"),
        as_of=str(entry.get("as_of") or today),
    )


def _amount(name: str, field: str, value: Any) -> Decimal | None:
    if value is None:
        return None
    # bool is an int to Python; true/false is never a price.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _bad(f'{name!r}: {field} must be a decimal number such as "0.03"')
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise _bad(f"{name!r}: {field} {value!r} is not a decimal number") from None
    if not amount.is_finite() or amount < 0:
        raise _bad(f"{name!r}: {field} must be a finite amount ≥ 0")
    return amount


def _bad(message: str) -> ConfigError:
    return ConfigError(f"invalid configuration:\n  EDITQUEUE_PRICES: {message}")
