"""Sandbox settings, from a dict (tests) layered over `SANDBOX_*` environment variables."""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Mapping
from typing import Any

ENV_PREFIX = "SANDBOX_"


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    """Every knob of the sandbox; dict keys are the env names without `SANDBOX_`, lowercased."""

    # Accepted bearer keys; None accepts any non-empty key.
    api_keys: frozenset[str] | None = None
    # KIE's optional `webhookHmacKey`: callbacks are signed only when it is set.
    kie_webhook_key: str | None = None
    # Seconds a KIE task takes from `waiting` to its final state.
    latency: float = 2.0
    # Up to this many seconds more, drawn per task: task ends spread across a poll interval
    # rather than all landing at the same phase of it (bench.latency).
    latency_jitter: float = 0.0
    # Seconds an Ark (synchronous) edit takes.
    ark_latency: float = 0.2
    # Base URL for result links; None = the host the request came in on.
    public_url: str | None = None
    # Lifetime of result links, in seconds.
    url_ttl: float = 86_400.0
    # Timeout for fetching input image URLs and for posting callbacks.
    fetch_timeout: float = 10.0

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> SandboxConfig:
        """Build the config: `overrides` win over the environment, which wins over defaults."""
        environ = os.environ if environ is None else environ
        raw: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            env_value = environ.get(ENV_PREFIX + field.name.upper())
            if env_value not in (None, ""):
                raw[field.name] = env_value
        raw.update(overrides or {})
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown sandbox setting(s): {', '.join(sorted(unknown))}")
        return cls(**{name: _coerce(name, value) for name, value in raw.items()})

    def task_latency(self) -> float:
        """Seconds one new task takes: the latency plus its share of the jitter."""
        return self.latency + random.uniform(0.0, self.latency_jitter)


def _coerce(name: str, value: Any) -> Any:
    """Turn an env string (or a dict value) into the field's type."""
    if name == "api_keys":
        if value is None:
            return None
        items = value.split(",") if isinstance(value, str) else list(value)
        keys = frozenset(k.strip() for k in items if k.strip())
        return keys or None
    if name in ("latency", "latency_jitter", "ark_latency", "url_ttl", "fetch_timeout"):
        number = float(value)
        if number < 0:
            raise ValueError(f"sandbox setting {name} must not be negative")
        return number
    if name == "public_url":
        return str(value).rstrip("/") if value else None
    return value or None
