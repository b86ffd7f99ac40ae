"""The worker's Context: settings pick the implementations behind its seams."""

from __future__ import annotations

import pytest

from editqueue.config import Settings
from editqueue.infra.storage import LocalStorage, MemoryStorage
from editqueue.providers.limits import LocalLimits, ProviderLimits
from worker import context


@pytest.mark.parametrize(
    ("values", "storage", "limits"),
    [
        ({"storage_url": "memory://", "provider_limits": "memory"}, MemoryStorage, LocalLimits),
        ({}, LocalStorage, ProviderLimits),
    ],
)
def test_settings_pick_storage_and_limits(
    monkeypatch: pytest.MonkeyPatch, tmp_path, values: dict, storage: type, limits: type
) -> None:
    settings = Settings(
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",  # never connected to here
        data_dir=tmp_path,
        ark_api_key="k",
        ark_max_concurrent=2,
        **values,
    )
    monkeypatch.setattr(context, "get_settings", lambda: settings)
    ctx = context._build()
    try:
        assert isinstance(ctx.storage, storage)
        assert isinstance(ctx.limits, limits)
        assert ctx.available("ark") and not ctx.available("kie")
    finally:
        ctx.downloads.close()
        ctx.user_urls.close()
