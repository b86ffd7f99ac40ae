"""Settings are validated at start, with one clear line per bad value."""

from __future__ import annotations

import ipaddress

import pytest

from editqueue.config import ConfigError, load_settings
from editqueue.webhooks.limits import max_in_flight


def test_defaults_are_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "EDITQUEUE_STORAGE_URL",
        "EDITQUEUE_DATA_DIR",
        "EDITQUEUE_ALLOW_PRIVATE_URLS",
        "EDITQUEUE_WEBHOOK_SCHEDULE",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.database_url is None
    assert settings.effective_storage_url.startswith("file:///")
    assert settings.webhook_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert settings.allow_private_urls == ()


def test_urls_and_lists_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db/x")
    monkeypatch.setenv("EDITQUEUE_ALLOW_PRIVATE_URLS", "10.0.0.0/8, ::1")
    monkeypatch.setenv("EDITQUEUE_WEBHOOK_SCHEDULE", "1,2.5")
    monkeypatch.setenv("EDITQUEUE_KIE_API_KEY", "k")
    settings = load_settings()
    assert settings.database_url == "postgresql+psycopg://u@db/x"
    assert settings.allow_private_urls == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert settings.webhook_schedule == (1.0, 2.5)
    assert "kie" in settings.configured_providers()
    assert settings.provider_base_url("kie") == "https://api.kie.ai"


def test_every_bad_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    monkeypatch.setenv("REDIS_URL", "http://x")
    monkeypatch.setenv("EDITQUEUE_STORAGE_URL", "gs://bucket")
    monkeypatch.setenv("EDITQUEUE_ALLOW_PRIVATE_URLS", "not-a-cidr")
    monkeypatch.setenv("EDITQUEUE_LEASE_SECONDS", "soon")
    monkeypatch.setenv("EDITQUEUE_WEBHOOK_SCHEDULE", "5,-1")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "EDITQUEUE_STORAGE_URL",
        "EDITQUEUE_ALLOW_PRIVATE_URLS",
        "EDITQUEUE_LEASE_SECONDS",
        "EDITQUEUE_WEBHOOK_SCHEDULE",
    ):
        assert name in message


def test_production_requires_a_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITQUEUE_ENV", "production")
    monkeypatch.delenv("EDITQUEUE_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="EDITQUEUE_SECRET_KEY"):
        load_settings()


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITQUEUE_ARK_API_KEY", "ark-very-secret")
    monkeypatch.setenv("EDITQUEUE_SECRET_KEY", "signing-very-secret")
    text = repr(load_settings())
    assert "very-secret" not in text


TUNING_VARIABLES = (
    "EDITQUEUE_RATE_LIMIT",
    "EDITQUEUE_WEBHOOK_ROTATION_OVERLAP",
    "EDITQUEUE_WEBHOOK_DISABLE_AFTER",
    "EDITQUEUE_WEBHOOK_MAX_IN_FLIGHT",
)


def test_rate_limit_and_webhook_tuning_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*TUNING_VARIABLES, "EDITQUEUE_WORKER_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.rate_limit == 50
    assert settings.webhook_rotation_overlap == 86_400
    assert settings.webhook_disable_after == 5 * 86_400
    assert settings.webhook_max_in_flight is None
    assert max_in_flight(settings.worker_concurrency, settings.webhook_max_in_flight) == 4
    assert max_in_flight(2, None) == 1
    # An empty value is unset, as it always was for these.
    for name in TUNING_VARIABLES:
        monkeypatch.setenv(name, " ")
    assert load_settings() == settings


def test_rate_limit_and_webhook_tuning_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITQUEUE_RATE_LIMIT", "7.5")
    monkeypatch.setenv("EDITQUEUE_WEBHOOK_ROTATION_OVERLAP", "0")
    monkeypatch.setenv("EDITQUEUE_WEBHOOK_DISABLE_AFTER", "60")
    monkeypatch.setenv("EDITQUEUE_WEBHOOK_MAX_IN_FLIGHT", "3")
    settings = load_settings()
    assert settings.rate_limit == 7.5
    assert settings.webhook_rotation_overlap == 0
    assert settings.webhook_disable_after == 60
    assert settings.webhook_max_in_flight == 3
    assert max_in_flight(16, settings.webhook_max_in_flight) == 3
    monkeypatch.setenv("EDITQUEUE_RATE_LIMIT", "0")  # limiting off
    assert load_settings().rate_limit == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EDITQUEUE_RATE_LIMIT", "lots"),
        ("EDITQUEUE_RATE_LIMIT", "-1"),
        ("EDITQUEUE_RATE_LIMIT", "nan"),
        ("EDITQUEUE_WEBHOOK_ROTATION_OVERLAP", "a day"),
        ("EDITQUEUE_WEBHOOK_ROTATION_OVERLAP", "-1"),
        ("EDITQUEUE_WEBHOOK_ROTATION_OVERLAP", "1e12"),
        ("EDITQUEUE_WEBHOOK_DISABLE_AFTER", "soon"),
        ("EDITQUEUE_WEBHOOK_DISABLE_AFTER", "0"),
        ("EDITQUEUE_WEBHOOK_DISABLE_AFTER", "inf"),
        ("EDITQUEUE_WEBHOOK_MAX_IN_FLIGHT", "many"),
        ("EDITQUEUE_WEBHOOK_MAX_IN_FLIGHT", "0"),
        ("EDITQUEUE_WEBHOOK_MAX_IN_FLIGHT", "2.5"),
    ],
)
def test_a_bad_rate_limit_or_webhook_tuning_value_stops_loading(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    lines = str(info.value).splitlines()[1:]
    assert [line.strip().split(":")[0] for line in lines] == [name]
