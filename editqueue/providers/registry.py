"""Which adapter serves which vendor name, and one long-lived adapter per vendor.

Adding a vendor means one factory function and one entry in FACTORIES; nothing else here
changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from editqueue.config import Settings
from editqueue.providers.acedata import AceDataProvider
from editqueue.providers.ark import ArkProvider
from editqueue.providers.base import Provider
from editqueue.providers.cometapi import CometApiProvider
from editqueue.providers.kie import KieProvider
from editqueue.providers.vtrix import VtrixProvider

ProviderFactory = Callable[[Settings], Provider]


def _require_key(name: str, settings: Settings) -> str:
    key = settings.provider_api_key(name)
    if not key:
        raise ValueError(f"provider {name} is not configured (EDITQUEUE_{name.upper()}_API_KEY)")
    return key


def _plain(name: str, adapter: Callable[..., Provider]) -> ProviderFactory:
    """A factory for a vendor configured by its key, base URL and the shared timeout only."""

    def build(settings: Settings) -> Provider:
        return adapter(
            _require_key(name, settings),
            settings.provider_base_url(name),
            timeout=settings.provider_timeout,
        )

    return build


def _build_kie(settings: Settings) -> Provider:
    webhook_key = settings.kie_webhook_key
    return KieProvider(
        _require_key("kie", settings),
        settings.provider_base_url("kie"),
        timeout=settings.provider_timeout,
        webhook_key=webhook_key.get_secret_value() if webhook_key else None,
    )


# Vendor name → factory.
FACTORIES: dict[str, ProviderFactory] = {
    "ark": _plain("ark", ArkProvider),
    "kie": _build_kie,
    "cometapi": _plain("cometapi", CometApiProvider),
    "acedata": _plain("acedata", AceDataProvider),
    "vtrix": _plain("vtrix", VtrixProvider),
}

_cache_lock = threading.Lock()
_cache: dict[tuple[str, tuple[object, ...]], Provider] = {}


def build_provider(name: str, settings: Settings) -> Provider:
    """A new adapter for `name`; KeyError if unknown, ValueError if it has no API key."""
    return _factory(name)(settings)


def get_provider(name: str, settings: Settings) -> Provider:
    """The process-wide adapter for `name` under these settings (built on first use)."""
    factory = _factory(name)
    key = (name, _fingerprint(name, settings))
    with _cache_lock:
        provider = _cache.get(key)
        if provider is None:
            provider = _cache[key] = factory(settings)
        return provider


def close_providers() -> None:
    """Close and forget every cached adapter (worker shutdown, tests)."""
    with _cache_lock:
        providers = list(_cache.values())
        _cache.clear()
    for provider in providers:
        provider.close()


def _factory(name: str) -> ProviderFactory:
    try:
        return FACTORIES[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}") from None


def _fingerprint(name: str, settings: Settings) -> tuple[object, ...]:
    """The settings an adapter is built from: when they change, a fresh adapter is built."""
    webhook_key = settings.kie_webhook_key
    return (
        settings.provider_api_key(name),
        settings.provider_base_url(name),
        settings.provider_timeout,
        webhook_key.get_secret_value() if webhook_key else None,
    )
