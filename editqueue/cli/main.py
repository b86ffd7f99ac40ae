"""The `editqueue` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from editqueue.cli.jobs import jobs as jobs_group
from editqueue.cli.jobs import submit_command
from editqueue.cli.webhooks import webhooks as webhooks_group
from editqueue.config import ConfigError, load_settings
from editqueue.standalone import processes


def _settings_or_exit():  # type: ignore[no-untyped-def]
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
    from editqueue.db import make_engine, make_session_factory
    from editqueue.infra.storage import StorageError, open_storage
    from editqueue.jobs import audit as checks

    _use_standalone_info(data_dir)
    settings = _settings_or_exit()
    engine = make_engine(_database_url(), pool_size=1)
    storage = open_storage(
        settings.effective_storage_url,
        public_url=settings.public_url,
        signing_key=settings.signing_key,
    )
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
    finally:
        engine.dispose()
    for violation in violations:
        click.echo(str(violation))
    click.echo(f"{len(violations)} violation(s)", err=True)
    sys.exit(1 if violations else 0)


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
@click.option("--workers", type=int, default=16, show_default=True, help="Worker threads.")
@click.option(
    "--verbose", is_flag=True, help="Show every process's output (default: DIR/logs only)."
)
def standalone(
    data_dir: Path, port: int, demo: bool, exit_after_demo: bool, workers: int, verbose: bool
) -> None:
    """The whole stack on this machine: embedded PostgreSQL/Redis, API, worker, beat, sandbox."""
    from editqueue.standalone import launcher as stack

    try:
        code = stack.run(
            data_dir,
            port,
            demo=demo,
            exit_after_demo=exit_after_demo,
            workers=workers,
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
@click.option("--workers", type=int, default=2, show_default=True)
def api(bind: str, workers: int) -> None:
    """Run the API under gunicorn."""
    _settings_or_exit()
    _exec(processes.api_argv(bind, workers=workers))


@main.command()
@click.option("--concurrency", type=int, default=None, help="Threads (default from settings).")
def worker(concurrency: int | None) -> None:
    """Run a Celery worker on every queue."""
    settings = _settings_or_exit()
    _exec(processes.worker_argv(concurrency or settings.worker_concurrency))


@main.command()
def beat() -> None:
    """Run the beat scheduler (exactly one per deployment)."""
    _settings_or_exit()
    _exec(processes.beat_argv())


def _exec(argv: list[str]) -> None:
    os.execvp(argv[0], argv)


# Client-side commands live in their own modules; they talk to the API over HTTP.
main.add_command(jobs_group)
main.add_command(webhooks_group)
main.add_command(submit_command)
