"""`editqueue standalone`: the production stack on one machine, started as child processes.

Same PostgreSQL, same Redis protocol, same Celery and API as production; only the servers
are embedded (when their URLs are unset) and the vendors are the local sandbox. Like
production it refuses user URLs on loopback and private ranges unless
EDITQUEUE_ALLOW_PRIVATE_URLS says otherwise, and it restarts whatever crashes.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from editqueue import migrate
from editqueue.config import PROVIDERS, load_settings
from editqueue.db import make_engine, make_session_factory, transaction
from editqueue.standalone import processes
from editqueue.standalone.embedded import EmbeddedPostgres, EmbeddedRedis
from editqueue.standalone.ports import free_port
from editqueue.standalone.supervisor import RestartPolicy, Supervisor, wait_for_http
from editqueue.tenants import authenticate, create_api_key, ensure_tenant, key_digest

if TYPE_CHECKING:
    from editqueue.standalone.demo import Receiver

# Vendors the sandbox emulates; each is routed to the sandbox in standalone mode.
SANDBOX_VENDORS = ("ark", "kie", "cometapi", "acedata", "vtrix")
DEMO_TENANT = "demo"
INFO_FILE = "standalone.json"
# The production stack on one machine heals like one under systemd: a crashed piece is
# restarted after 0.5 s doubling to 10 s; five crashes of one piece within a minute mean
# something is broken for good, and the whole stack stops with that message.
RESTARTS = RestartPolicy(first_delay=0.5, max_delay=10.0, max_crashes=5, window=60.0)


@dataclass
class StackInfo:
    """What `standalone.json` records for scripts and the operator commands."""

    api_url: str
    api_key: str
    sandbox_url: str
    database_url: str
    redis_url: str
    data_dir: str
    storage_url: str

    def write(self, path: Path) -> None:
        """Write the file readable by the owner only (it holds a key)."""
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")
        path.chmod(0o600)


def _secret_key(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _say(message: str) -> None:
    click.echo(click.style("editqueue", fg="cyan", bold=True) + " " + message)


Embedded = EmbeddedPostgres | EmbeddedRedis


def _servers(data_dir: Path) -> tuple[str, str, dict[str, Embedded]]:
    """DATABASE_URL and REDIS_URL, starting embedded servers for whichever is unset."""
    servers: dict[str, Embedded] = {}
    database_url = os.environ.get("DATABASE_URL") or ""
    redis_url = os.environ.get("REDIS_URL") or ""
    try:
        if not database_url:
            postgres = EmbeddedPostgres(data_dir / "postgres")
            _say("starting embedded PostgreSQL …")
            database_url = postgres.start()
            servers["postgres"] = postgres
        if not redis_url:
            redis_server = EmbeddedRedis(data_dir / "redis")
            _say("starting embedded Redis …")
            redis_url = redis_server.start()
            servers["redis"] = redis_server
    except BaseException:
        _stop_servers(servers)
        raise
    return database_url, redis_url, servers


def _stop_servers(servers: dict[str, Embedded]) -> None:
    for server in reversed(list(servers.values())):
        server.stop()


def _allowance(demo_receiver: Receiver | None) -> str:
    """EDITQUEUE_ALLOW_PRIVATE_URLS for the children: the operator's, plus the demo's receiver.

    Empty by default, as in production: user URLs on loopback or private ranges are
    refused. The sandbox needs no entry (vendor links are allowed by their own list).
    """
    entries = [os.environ.get("EDITQUEUE_ALLOW_PRIVATE_URLS", "").strip()]
    if demo_receiver is not None:
        entries.append(demo_receiver.allowance)  # that one port, never the whole range
    return ",".join(e for e in entries if e)


def _child_env(
    *,
    database_url: str,
    redis_url: str,
    api_url: str,
    sandbox_url: str,
    data_dir: Path,
    allowance: str,
) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "EDITQUEUE_DATA_DIR": str(data_dir),
        "EDITQUEUE_PUBLIC_URL": api_url,
        "EDITQUEUE_SECRET_KEY": _secret_key(data_dir),
        "EDITQUEUE_ALLOW_PRIVATE_URLS": allowance,
        "SANDBOX_PUBLIC_URL": sandbox_url,
        # People read this terminal; production keeps the JSON default.
        "EDITQUEUE_LOG_FORMAT": os.environ.get("EDITQUEUE_LOG_FORMAT", "text"),
    }
    for vendor in PROVIDERS:
        key = f"EDITQUEUE_{vendor.upper()}_API_KEY"
        env[key] = ""  # only the sandbox's vendors, unless the operator set real ones
        if os.environ.get(key):
            env[key] = os.environ[key]
    for vendor in SANDBOX_VENDORS:
        prefix = f"EDITQUEUE_{vendor.upper()}"
        if not os.environ.get(f"{prefix}_API_KEY"):
            env[f"{prefix}_API_KEY"] = "sandbox-key"
            env[f"{prefix}_BASE_URL"] = f"{sandbox_url}/{vendor}"
    return env


def _demo_key(database_url: str, info_path: Path) -> str:
    """The demo tenant's key: the one from the last run if it still works, else a new one."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    sessions = make_session_factory(engine)
    try:
        old = json.loads(info_path.read_text()).get("api_key") if info_path.exists() else None
        with transaction(sessions) as session:
            if old and authenticate(session, old) is not None:
                return old
            return create_api_key(session, ensure_tenant(session, DEMO_TENANT))
    finally:
        engine.dispose()


def _supervisor(
    env: dict[str, str],
    *,
    data_dir: Path,
    port: int,
    sandbox_port: int,
    workers: int,
    verbose: bool,
) -> Supervisor:
    """The four children, logging to DATA_DIR/logs (and to the terminal when verbose)."""
    level = "INFO" if verbose else "WARNING"
    supervisor = Supervisor(
        stop_timeout=15.0,
        restart=RESTARTS,
        log_dir=data_dir / "logs",
        quiet=not verbose,
        say=_say,
    )
    supervisor.add("sandbox", processes.sandbox_argv(sandbox_port), env)
    supervisor.add("api", processes.api_argv(f"127.0.0.1:{port}", quiet=not verbose), env)
    supervisor.add("worker", processes.worker_argv(workers, loglevel=level), env)
    schedule = data_dir / "celerybeat-schedule"
    supervisor.add("beat", processes.beat_argv(schedule=schedule, loglevel=level), env)
    return supervisor


def run(
    data_dir: Path,
    port: int,
    *,
    demo: bool,
    exit_after_demo: bool,
    workers: int = 16,
    verbose: bool = False,
) -> int:
    """Start everything, print how to reach it, and supervise until Ctrl-C."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    receiver = None
    if demo:
        from editqueue.standalone.demo import Receiver

        receiver = Receiver()  # listening now, so its one port can be allowed
    database_url, redis_url, servers = _servers(data_dir)
    try:
        _say("migrating the database …")
        migrate.upgrade(database_url)
        api_url = f"http://127.0.0.1:{port}"
        sandbox_port = free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        env = _child_env(
            database_url=database_url,
            redis_url=redis_url,
            api_url=api_url,
            sandbox_url=sandbox_url,
            data_dir=data_dir,
            allowance=_allowance(receiver),
        )
        os.environ.update(env)
        settings = load_settings()  # a bad environment fails here, before any child starts
        # Every child and the operator commands must agree on where results live.
        env["EDITQUEUE_STORAGE_URL"] = settings.effective_storage_url
        supervisor = _supervisor(
            env,
            data_dir=data_dir,
            port=port,
            sandbox_port=sandbox_port,
            workers=workers,
            verbose=verbose,
        )
        for name, server in servers.items():
            supervisor.watch(name, exit_status=server.exit_status, restart=server.restart)
        supervisor.start()
        try:
            wait_for_http(f"{sandbox_url}/_control/stats", timeout=30)
            wait_for_http(f"{api_url}/healthz", timeout=60)
        except Exception:
            supervisor.stop()
            raise
        info_path = data_dir / INFO_FILE
        info = StackInfo(
            api_url=api_url,
            api_key=_demo_key(database_url, info_path),
            sandbox_url=sandbox_url,
            database_url=database_url,
            redis_url=redis_url,
            data_dir=str(data_dir),
            storage_url=settings.effective_storage_url,
        )
        info.write(info_path)
        _print_banner(info, info_path)
        outcome: dict[str, int] = {}
        if receiver is not None:

            def run_demo() -> None:
                from editqueue.standalone.demo import run_demo as demo_main

                outcome["code"] = demo_main(info.api_url, info.api_key, receiver=receiver)
                if exit_after_demo:
                    supervisor.request_stop()

            threading.Thread(target=run_demo, name="demo", daemon=True).start()
        code = supervisor.wait()
        if code != 0:
            _say(f"stopped after repeated crashes of {supervisor.failed}; see {data_dir / 'logs'}")
        return outcome.get("code", code) if exit_after_demo and code == 0 else code
    finally:
        _stop_servers(servers)
        if receiver is not None:
            receiver.close()
        _say("stopped.")


def console_link(info: StackInfo) -> str:
    """A one-time, short-lived link that signs the demo tenant in to the console (it
    carries a signed token, never the key)."""
    from api.console.signin_token import make_signin_token  # the API package, loaded late

    secret = _secret_key(Path(info.data_dir)).encode()
    token = make_signin_token(secret, key_digest(info.api_key) or "")
    return f"{info.api_url}/console/signin/{token}"


def _print_banner(info: StackInfo, info_path: Path) -> None:
    _say("is up")
    click.echo(f"  API        {info.api_url}   (docs: {info.api_url}/docs)")
    click.echo(f"  console    {console_link(info)}   (one-time sign-in link, 30 min)")
    click.echo(f"  API key    {info.api_key}")
    click.echo(f"  sandbox    {info.sandbox_url}")
    click.echo(f"  database   {info.database_url}")
    click.echo(f"  redis      {info.redis_url}")
    click.echo(f"  results    {info.storage_url}")
    click.echo(f"  logs       {Path(info.data_dir) / 'logs'}")
    click.echo(f"  written to {info_path}")
    click.echo("  Ctrl-C stops everything; the next start reuses the data.")


def read_info(data_dir: Path) -> dict[str, str] | None:
    """The `standalone.json` under `data_dir`, or None when there is none (or it is unreadable)."""
    try:
        info = json.loads((data_dir / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
