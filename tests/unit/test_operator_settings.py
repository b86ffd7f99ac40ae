"""Settings of the operator controls, and the key-change counter when Redis is away."""

from __future__ import annotations

import pytest

from editqueue.config import ConfigError, load_settings
from editqueue.infra import key_generation
from editqueue.standalone.ports import free_port


def test_cors_origins_parse_and_refuse_what_is_not_an_origin() -> None:
    settings = load_settings(cors_origins=" https://app.example.com/, http://localhost:3000 ")
    assert settings.cors_origins == ("https://app.example.com", "http://localhost:3000")
    assert load_settings(cors_origins="*").cors_origins == ("*",)
    assert load_settings(cors_origins="").cors_origins == ()
    for bad in ("app.example.com", "ftp://x.example", "https://app.example.com/path"):
        with pytest.raises(ConfigError, match="EDITQUEUE_CORS_ORIGINS"):
            load_settings(cors_origins=bad)


def test_blank_values_from_compose_mean_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EDITQUEUE_WORKER_CONCURRENCY", "EDITQUEUE_ADMIN_KEY", "EDITQUEUE_CORS_ORIGINS"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("EDITQUEUE_S3_PUBLIC_ENDPOINT", "")
    settings = load_settings()
    assert settings.worker_concurrency == 16
    assert not (settings.admin_key and settings.admin_key.get_secret_value())
    assert settings.cors_origins == () and settings.s3_public_endpoint is None
    with pytest.raises(ConfigError, match="EDITQUEUE_S3_PUBLIC_ENDPOINT"):
        load_settings(s3_public_endpoint="localhost:9000")


def test_generation_is_unknown_while_redis_is_unreachable() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    reader = key_generation.GenerationReader(key_generation.connect(url))
    assert reader.current() is None  # callers then skip their caches
    assert reader.current() is None  # and keep skipping Redis for a while, without waiting
    assert key_generation.bump(url) is False
    assert key_generation.GenerationReader(None).current() is None
