"""Settings from the environment, validated once at start."""

from __future__ import annotations

import functools
import ipaddress
import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from editqueue.infra.netguard import Endpoint, parse_allowance

PROVIDERS = ("ark", "cometapi", "acedata", "kie", "vtrix")
# How a job's vendor is picked among its route (editqueue.jobs.routing).
ROUTING_STRATEGIES = ("ordered", "cheapest", "fastest", "least_busy", "weighted")

# The vendors' real hosts; overridden per provider by EDITQUEUE_<P>_BASE_URL.
DEFAULT_BASE_URLS = {
    "ark": "https://ark.cn-beijing.volces.com",
    "cometapi": "https://api.cometapi.com",
    "acedata": "https://api.acedata.cloud",
    "kie": "https://api.kie.ai",
    "vtrix": "https://cloud.vtrix.ai",
}

DEFAULT_WEBHOOK_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
# Upper bound of the webhook durations below: far past any real setting, and well inside
# what datetime arithmetic can add to today.
_CENTURY_SECONDS = 100 * 365 * 86_400


class ConfigError(Exception):
    """The environment holds a value the service cannot run with."""


class Settings(BaseSettings):
    """Every knob of the service; names follow the README (`EDITQUEUE_*`, plus the URLs)."""

    model_config = SettingsConfigDict(
        env_prefix="EDITQUEUE_", extra="ignore", case_sensitive=False, frozen=True
    )

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    data_dir: Path = Path(".editqueue")
    storage_url: str | None = None
    public_url: str = "http://127.0.0.1:8080"
    secret_key: SecretStr = SecretStr("")
    env: str = "development"

    ark_api_key: SecretStr | None = None
    ark_base_url: str = DEFAULT_BASE_URLS["ark"]
    cometapi_api_key: SecretStr | None = None
    cometapi_base_url: str = DEFAULT_BASE_URLS["cometapi"]
    acedata_api_key: SecretStr | None = None
    acedata_base_url: str = DEFAULT_BASE_URLS["acedata"]
    kie_api_key: SecretStr | None = None
    kie_base_url: str = DEFAULT_BASE_URLS["kie"]
    vtrix_api_key: SecretStr | None = None
    vtrix_base_url: str = DEFAULT_BASE_URLS["vtrix"]
    kie_webhook_key: SecretStr | None = None

    # Per-vendor limits shared by all workers (unset = unlimited).
    ark_rps: int | None = Field(default=None, ge=1)
    ark_max_concurrent: int | None = Field(default=None, ge=1)
    cometapi_rps: int | None = Field(default=None, ge=1)
    cometapi_max_concurrent: int | None = Field(default=None, ge=1)
    acedata_rps: int | None = Field(default=None, ge=1)
    acedata_max_concurrent: int | None = Field(default=None, ge=1)
    kie_rps: int | None = Field(default=None, ge=1)
    kie_max_concurrent: int | None = Field(default=None, ge=1)
    vtrix_rps: int | None = Field(default=None, ge=1)
    vtrix_max_concurrent: int | None = Field(default=None, ge=1)
    # Route order per model, e.g. "seededit-3.0=vtrix,ark;seedream-4.0-edit=kie,ark"; with
    # weights ("seededit-3.0=vtrix:80,ark:20") the model is split by them (`weighted`).
    routes: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(default_factory=dict)
    # The weights of EDITQUEUE_ROUTES, per model and vendor (filled from it, see
    # _split_route_weights; models routed without weights are absent).
    route_weights: Annotated[dict[str, dict[str, int]], NoDecode] = Field(default_factory=dict)
    # Routing strategy per model, e.g. "seededit-3.0=cheapest;seedream-4.0-edit=fastest"
    # (editqueue.jobs.routing); a job's own `routing` field wins.
    routing: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # A vendor failing this many times within a short window is skipped for a while.
    provider_failure_threshold: int = Field(default=3, ge=1)
    provider_cooldown: float = Field(default=30.0, ge=0)
    # Where those limits live: `redis` (shared by every worker) or `memory` (this process
    # only: one worker process, or unit tests; see editqueue.providers.limits.LocalLimits).
    provider_limits: str = Field(default="redis", pattern="^(redis|memory)$")

    # CIDRs and exact host:port endpoints user URLs may reach (netguard.parse_allowance).
    allow_private_urls: Annotated[
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network | Endpoint, ...], NoDecode
    ] = ()
    # Where the sandbox says its result links live, when it runs (the worker may fetch there).
    sandbox_public_url: str | None = Field(default=None, validation_alias="SANDBOX_PUBLIC_URL")

    # Job timing. A lease bounds how long a dead worker can hold a job step: the working
    # process renews it every quarter lease (editqueue.heartbeat), so a live worker keeps
    # even a vendor call longer than the lease, and a dead one's steps are taken over
    # one lease after its last renewal.
    default_deadline_seconds: int = Field(default=900, ge=10, le=86_400)
    provider_timeout: float = Field(default=120.0, gt=0)
    lease_seconds: float = Field(default=20.0, gt=0)
    # A step holding its job longer than this loses it to another worker
    # (editqueue/jobs/heartbeat.py): the per-task time limit of the threads pool.
    step_time_limit: float = Field(default=600.0, gt=0)
    redispatch_after: float = Field(default=300.0, gt=0)
    poll_scale: float = Field(default=1.0, gt=0)  # multiplies the poll back-off (tests shrink it)
    # The retry budget: vendor attempts per job in all, spent along the route (README, "Retries");
    # 429 waits give their attempt back.
    max_attempts: int = Field(default=3, ge=1, le=1000)
    output_link_ttl: int = Field(default=3600, ge=60, le=7 * 86_400)

    # Webhooks: delays in seconds between attempts (docs/webhooks.md); tests compress it.
    webhook_schedule: Annotated[tuple[float, ...], NoDecode] = DEFAULT_WEBHOOK_SCHEDULE
    webhook_timeout: float = Field(default=15.0, gt=0)
    # Seconds a rotated-out secret keeps signing next to the new one (a day, as Svix does).
    webhook_rotation_overlap: float = Field(
        default=86_400.0, ge=0, le=_CENTURY_SECONDS, allow_inf_nan=False
    )
    # Seconds an endpoint may fail every attempt before it is disabled (docs/webhooks.md: 5 days).
    webhook_disable_after: float = Field(
        default=5 * 86_400.0, ge=1, le=_CENTURY_SECONDS, allow_inf_nan=False
    )
    # Attempts to one target in flight at once per worker process (the slow-endpoint
    # fence); unset = a quarter of worker_concurrency (see webhook_tuning.max_in_flight).
    webhook_max_in_flight: int | None = Field(default=None, ge=1)
    # Endpoints one tenant may register: each multiplies every event into a delivery, so
    # an unbounded list is load on our workers and traffic at third parties.
    max_webhook_endpoints: int = Field(default=50, ge=1, le=10_000)

    # Bearer token `/metrics` asks for; unset leaves it open (restrict it at the network).
    metrics_token: SecretStr | None = None

    # Bearer token of the operator API (/v1/admin/…, api/admin.py); unset turns it off.
    admin_key: SecretStr | None = None
    # Browser origins allowed to call the API (comma list of scheme://host[:port], or "*").
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # The S3 endpoint result links are signed for, when clients reach the store on another
    # address than the service does (compose: http://localhost:9000 vs http://minio:9000).
    s3_public_endpoint: str | None = None

    # API requests per second per key (bursts of twice that); 0 turns limiting off.
    # Overridden per key by api_keys.rate_limit.
    rate_limit: float = Field(default=50.0, ge=0, allow_inf_nan=False)

    # Fair scheduling: jobs handed to workers but not yet started (kept short so a new
    # tenant's job never queues behind another's backlog), and in-flight jobs per tenant.
    dispatch_window: int = Field(default=64, ge=1, le=100_000)
    tenant_max_running: int = Field(default=1000, ge=1, le=1_000_000)

    # Spend control (editqueue.spend): the price table file or inline JSON overriding the
    # shipped defaults, the one currency every price and budget is in, and what one KIE
    # credit costs (KIE reports credits consumed, not money).
    prices: str | None = None
    currency: str = Field(default="USD", pattern="^[A-Z]{3}$")
    kie_credit_price: Decimal | None = Field(default=None, ge=0)

    # Days of job history kept (jobs, events, deliveries, stored objects); unset keeps
    # everything. Overridden per tenant by tenants.retention_days.
    retention_days: int | None = Field(default=None, ge=1, le=36_500)

    log_format: str = Field(default="json", pattern="^(json|text)$")
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    worker_concurrency: int = Field(default=16, ge=1, le=500)

    @field_validator("allow_private_urls", mode="before")
    @classmethod
    def _parse_cidrs(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse_allowance(value)
            except ValueError as exc:
                raise ValueError(f"not a list of CIDRs and host:port entries ({exc})") from None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        origins = tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
        for origin in origins:
            scheme, sep, rest = origin.partition("://")
            if origin != "*" and (scheme not in ("http", "https") or not sep or not rest):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port]) or *")
            if "/" in rest:
                raise ValueError(f"{origin!r}: an origin has no path")
        return origins

    @model_validator(mode="before")
    @classmethod
    def _split_route_weights(cls, data: Any) -> Any:
        # One variable carries order and weights; `routes` stays a plain order for its readers.
        if isinstance(data, dict) and isinstance(data.get("routes"), str):
            try:
                parsed = _parse_route_spec(data["routes"])
            except ValueError:
                return data  # the field's own validator reports it, under its name
            data = {
                **data,
                "routes": {m: tuple(v) for m, v in parsed.items()},
                "route_weights": {
                    m: {p: w for p, w in v.items() if w is not None}
                    for m, v in parsed.items()
                    if any(w is not None for w in v.values())
                },
            }
        return data

    @field_validator("routes", mode="before")
    @classmethod
    def _parse_routes(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return {m: tuple(v) for m, v in _parse_route_spec(value).items()}

    @field_validator("routing", mode="before")
    @classmethod
    def _parse_routing(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        strategies: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in value.split(";"))):
            model, sep, strategy = part.partition("=")
            if not sep or not model.strip() or strategy.strip() not in ROUTING_STRATEGIES:
                raise ValueError(
                    "expected MODEL=strategy;… with strategies " + ", ".join(ROUTING_STRATEGIES)
                )
            strategies[model.strip()] = strategy.strip()
        return strategies

    @field_validator("webhook_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                delays = tuple(float(v) for v in value.split(",") if v.strip())
            except ValueError:
                raise ValueError("a comma list of seconds, e.g. 5,300,1800") from None
            if not delays or any(d < 0 for d in delays):
                raise ValueError("a non-empty comma list of non-negative seconds")
            return delays
        return value

    @field_validator(
        "rate_limit",
        "kie_credit_price",
        "retention_days",
        "webhook_rotation_overlap",
        "webhook_disable_after",
        "webhook_max_in_flight",
        "worker_concurrency",
        mode="before",
    )
    @classmethod
    def _blank_means_default(cls, value: Any) -> Any:
        # These knobs have always treated an empty value as unset (worker_concurrency too:
        # docker-compose.yml passes it through blank when the operator sets none).
        if isinstance(value, str) and not value.strip():
            raise PydanticUseDefault()
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must be a PostgreSQL URL (postgresql://…)")
        if value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://") :]
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value[len("postgresql://") :]
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "redis+socket://", "unix://")):
            raise ValueError("must be a Redis URL (redis://host:port/db or redis+socket://path)")
        return value

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("file://", "s3://", "memory://")):
            raise ValueError("must be file:///path, s3://bucket/prefix or memory://")
        return value

    @field_validator("s3_public_endpoint")
    @classmethod
    def _check_s3_public_endpoint(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL, e.g. http://localhost:9000")
        return value.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    # -- derived values ---------------------------------------------------------------

    @property
    def effective_storage_url(self) -> str:
        """The storage URL, defaulting to a directory under the data dir."""
        return self.storage_url or f"file://{(self.data_dir / 'storage').resolve()}"

    @property
    def signing_key(self) -> bytes:
        """Key for callback tokens and local file links (a dev default when unset)."""
        raw = self.secret_key.get_secret_value()
        if raw:
            return raw.encode()
        return b"editqueue-development-secret-change-me"

    def provider_api_key(self, provider: str) -> str | None:
        """The configured API key of a vendor, or None."""
        secret: SecretStr | None = getattr(self, f"{provider}_api_key")
        return secret.get_secret_value() if secret else None

    def provider_base_url(self, provider: str) -> str:
        """The base URL of a vendor (its real host unless overridden)."""
        return str(getattr(self, f"{provider}_base_url")).rstrip("/")

    def provider_limit(self, provider: str) -> tuple[int | None, int | None]:
        """(requests per second, concurrent tasks) configured for a vendor."""
        return getattr(self, f"{provider}_rps"), getattr(self, f"{provider}_max_concurrent")

    def configured_providers(self) -> list[str]:
        """Vendors with an API key set, in the default order."""
        return [p for p in PROVIDERS if self.provider_api_key(p)]


def _parse_route_spec(value: str) -> dict[str, dict[str, int | None]]:
    """EDITQUEUE_ROUTES: MODEL=vendor[:weight],…;… → model → vendor → weight (None: no weight)."""
    usage = (
        "expected MODEL=provider,provider;… or MODEL=provider:weight,provider:weight;… with "
        "providers from " + ", ".join(PROVIDERS)
    )
    routes: dict[str, dict[str, int | None]] = {}
    for part in filter(None, (p.strip() for p in value.split(";"))):
        model, sep, providers = part.partition("=")
        entries: dict[str, int | None] = {}
        for item in filter(None, (p.strip() for p in providers.split(","))):
            name, colon, weight = (x.strip() for x in item.partition(":"))
            if name not in PROVIDERS or name in entries:
                raise ValueError(usage)
            if colon and not weight.isdigit():
                raise ValueError(f"{model.strip()}: weight of {name} must be a whole number ≥ 0")
            entries[name] = int(weight) if colon else None
        if not sep or not model.strip() or not entries:
            raise ValueError(usage)
        weights = [w for w in entries.values() if w is not None]
        if weights and len(weights) != len(entries):
            raise ValueError(f"{model.strip()}: give every provider a weight, or none")
        if weights and not any(weights):
            raise ValueError(f"{model.strip()}: at least one weight must be above 0")
        routes[model.strip()] = entries
    return routes


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the environment; raise ConfigError with one line per bad value."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = err["loc"][0] if err["loc"] else "?"
            name = str(loc).upper()
            if name not in ("DATABASE_URL", "REDIS_URL"):
                name = f"EDITQUEUE_{name}"
            lines.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    if settings.env == "production":
        problem = _production_secret_problem(settings.secret_key.get_secret_value())
        if problem:
            raise ConfigError(f"invalid configuration:\n  EDITQUEUE_SECRET_KEY: {problem}")
    if settings.prices:
        # The price table's content (a file or inline JSON) is checked here so a bad one
        # stops the process at start, like any other bad value; imported late because
        # editqueue.spend itself imports this module.
        from editqueue.spend.prices import check_prices

        check_prices(settings)
    return settings


# Values shipped in examples (docker-compose.yml, the docs): never a production secret.
PLACEHOLDER_SECRETS = frozenset({"change-me", "change-me-in-production", "changeme", "secret"})
MIN_PRODUCTION_SECRET_LENGTH = 16


def _production_secret_problem(secret: str) -> str | None:
    if not secret:
        return "required in production"
    if secret.lower() in PLACEHOLDER_SECRETS or "change-me" in secret.lower():
        return "is a placeholder; set a random value (openssl rand -hex 32)"
    if len(secret) < MIN_PRODUCTION_SECRET_LENGTH:
        return f"must be at least {MIN_PRODUCTION_SECRET_LENGTH} characters in production"
    return None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()


def reset_settings_cache() -> None:
    """Forget cached settings (tests and the standalone supervisor change the environment)."""
    get_settings.cache_clear()


def env_flag(name: str) -> bool:
    """A boolean environment flag."""
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
