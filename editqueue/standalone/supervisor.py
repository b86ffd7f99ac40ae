"""Run the child processes of `editqueue standalone`: logged output, restarts, one shutdown.

Policy on a child that dies: without a RestartPolicy the supervisor logs it, stops
everything and `wait()` returns non-zero (what tests want: a crash is a failure). With one
(standalone mode, the production stack on one machine) it restarts the child after a
doubling delay and says so in one line, and gives up, stopping everything, only when a
child crashes too often in a short time: a crash loop then ends with a clear message
instead of scrolling by. Servers the supervisor did not spawn (the embedded PostgreSQL
daemonizes) are watched through `watch()` under the same policy.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from editqueue.standalone.startstop import StartStop

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How often wait() looks at its children. Polling (rather than waking from a signal
# handler through a lock) keeps the handlers trivial and free of deadlock risks.
_POLL_INTERVAL = 0.1
# Lines a person must see even when children's output goes to log files only: the level
# names gunicorn, Celery and Python's logging print, and tracebacks.
_IMPORTANT = re.compile(
    r"\[(WARNING|ERROR|CRITICAL)\]"  # gunicorn
    r"|[:\]] ?(WARNING|ERROR|CRITICAL)/"  # Celery
    r"|^(WARNING|ERROR|CRITICAL)[: ]"  # Python's logging defaults, redis/sandbox alike
    r"|\"level\": ?\"(warning|error|critical)\""  # editqueue's JSON lines
    r"|^Traceback \(most recent call last\)"
)
# Lines that continue a shown one (a traceback's frames and its final exception line).
_CONTINUATION = re.compile(r"^(\s|Traceback|[\w.]+(Error|Exception|Exit|Interrupt)\b)")


@dataclass(frozen=True)
class RestartPolicy:
    """Restart after `first_delay` s doubling to `max_delay`; give up after `max_crashes`."""

    first_delay: float = 0.5
    max_delay: float = 10.0
    max_crashes: int = 5  # within `window` seconds
    window: float = 60.0

    def delay(self, crashes: int) -> float:
        """The wait before the restart that follows the `crashes`-th recent crash."""
        return min(self.first_delay * 2 ** max(crashes - 1, 0), self.max_delay)


@dataclass
class _Unit:
    """What the restart policy tracks for anything supervised."""

    name: str
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None


@dataclass
class _Child(_Unit):
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None


@dataclass
class _Watched(_Unit):
    """A server started elsewhere: `exit_status()` is None while it runs."""

    exit_status: Callable[[], str | None] = lambda: None
    restart: Callable[[], object] = lambda: None


class Supervisor(StartStop):
    """Starts named children, logs their output, restarts them by policy, stops them all."""

    def __init__(
        self,
        *,
        stop_timeout: float = 10.0,
        output: TextIO | None = None,
        restart: RestartPolicy | None = None,
        log_dir: Path | None = None,
        quiet: bool = False,
        say: Callable[[str], None] | None = None,
    ) -> None:
        """`log_dir`: children's output also goes to NAME.log there; `quiet`: the terminal
        then shows only warnings, errors and tracebacks; `say` prints the supervisor's own
        notices (restarts, giving up) instead of the `[supervisor]` prefix."""
        self.stop_timeout = stop_timeout
        self.failed: str | None = None  # name of the child whose death ended wait()
        self.restart = restart
        self.log_dir = log_dir
        self.quiet = quiet
        self._say = say
        self._output = output
        self._children: list[_Child] = []
        self._watched: list[_Watched] = []
        self._write_lock = threading.Lock()
        self._stop_requested = False
        self._stopped = False

    # -- setup -----------------------------------------------------------------------

    def add(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        """Register a child; `env` entries are laid over the supervisor's environment."""
        self._check_new_name(name)
        # Python children buffer stdout when it is a pipe; unbuffered output keeps the
        # prefixed log in step with what the children do.
        merged = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._children.append(
            _Child(name, argv=list(argv), env=merged, cwd=Path(cwd) if cwd is not None else None)
        )

    def watch(
        self,
        name: str,
        *,
        exit_status: Callable[[], str | None],
        restart: Callable[[], object],
    ) -> None:
        """Watch a running server this supervisor did not spawn, restarting it by policy.

        `exit_status()` says how it ended ("signal 9", "exited") or None while it runs;
        `restart()` starts it again the same way (same data, same address). Stopping it
        stays with its owner.
        """
        self._check_new_name(name)
        self._watched.append(_Watched(name, exit_status=exit_status, restart=restart))

    def _check_new_name(self, name: str) -> None:
        if any(u.name == name for u in (*self._children, *self._watched)):
            raise ValueError(f"a child named {name!r} is already registered")

    @property
    def pids(self) -> dict[str, int]:
        """The pid of every started child, by name."""
        return {c.name: c.proc.pid for c in self._children if c.proc is not None}

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start every registered child; if one cannot be spawned, stop the others and raise."""
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for child in self._children:
            try:
                pid = self._spawn(child)
            except BaseException:
                self.stop()
                raise
            self._log(f"started {child.name} (pid {pid})")

    def request_stop(self) -> None:
        """Make wait() return 0 and stop the children (safe from any thread)."""
        self._stop_requested = True

    def wait(self) -> int:
        """Block until SIGINT/SIGTERM, request_stop() or a fatal crash; stop all; exit code."""
        previous = self._install_signal_handlers()
        try:
            while not self._stop_requested:
                code = self._check_units(time.monotonic())
                if code is not None:
                    self.stop()
                    return code
                time.sleep(_POLL_INTERVAL)
            self._log("stop requested; stopping everything")
            self.stop()
            return 0
        finally:
            self._restore_signal_handlers(previous)

    def stop(self) -> None:
        """SIGTERM every child's process group, SIGKILL those left after stop_timeout."""
        if self._stopped:
            return
        self._stopped = True
        started = [c for c in self._children if c.proc is not None]
        for child in started:
            # The whole group, even when the leader already exited: that also reaches
            # helpers it forked (worker pool processes) so none is left orphaned.
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in started:
            assert child.proc is not None
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._log(f"{child.name} ignored SIGTERM for {self.stop_timeout:g}s; killing it")
                _signal_group(child, signal.SIGKILL)
                child.proc.wait()
            self._log(f"{child.name} stopped (code {child.proc.returncode})")
        for child in started:
            if child.reader is not None:
                # The pipe closes when the last process holding it exits; a grandchild
                # that escaped the group must not hang the shutdown.
                child.reader.join(timeout=2.0)

    # -- crashes and restarts --------------------------------------------------------

    def _check_units(self, now: float) -> int | None:
        """Restart what is due and handle new deaths; an exit code once it is time to stop."""
        for unit in (*self._watched, *self._children):
            if unit.restart_at is not None:
                if now >= unit.restart_at and not self._restart(unit, now):
                    self.failed = unit.name
                    return 1
                continue
            status = self._exit_status(unit)
            if status is None:
                continue
            if self.restart is None:
                return self._fail(unit, status)
            if not self._schedule_restart(unit, status, now):
                self.failed = unit.name
                return 1
        return None

    def _exit_status(self, unit: _Unit) -> str | None:
        if isinstance(unit, _Watched):
            return unit.exit_status()
        assert isinstance(unit, _Child)
        if unit.proc is None or unit.proc.poll() is None:
            return None
        code = unit.proc.returncode
        return f"signal {-code}" if code < 0 else f"code {code}"

    def _fail(self, unit: _Unit, status: str) -> int:
        """No restart policy: the first death ends wait() with a non-zero code."""
        self.failed = unit.name
        code = 1
        if isinstance(unit, _Child) and unit.proc is not None:
            code = unit.proc.returncode
            if unit.reader is not None:
                unit.reader.join(timeout=1.0)  # its last words before our verdict
        self._notice(f"{unit.name} exited unexpectedly ({status}); stopping everything")
        # A long-running service that exits 0 on its own is still a failure.
        return code if code > 0 else 1

    def _schedule_restart(self, unit: _Unit, status: str, now: float) -> bool:
        """Note a crash and schedule the restart; False when it is one crash too many."""
        assert self.restart is not None
        policy = self.restart
        unit.crashes = [t for t in unit.crashes if now - t < policy.window] + [now]
        if isinstance(unit, _Child) and unit.reader is not None:
            unit.reader.join(timeout=1.0)  # its last words before our notice
        if len(unit.crashes) >= policy.max_crashes:
            self._notice(
                f"{unit.name} exited ({status}), {len(unit.crashes)} times in "
                f"{policy.window:g} s; giving up and stopping everything"
            )
            return False
        delay = policy.delay(len(unit.crashes))
        self._notice(f"{unit.name} exited ({status}); restarting in {delay:.1f} s")
        unit.restart_at = now + delay
        return True

    def _restart(self, unit: _Unit, now: float) -> bool:
        """Start `unit` again; False when that failed once too often (time to give up)."""
        unit.restart_at = None
        try:
            if isinstance(unit, _Watched):
                unit.restart()
            else:
                assert isinstance(unit, _Child)
                # Helpers the dead leader forked (gunicorn workers) may still hold its
                # port or its queue messages: they go before the new one starts.
                _signal_group(unit, signal.SIGKILL)
                self._log(f"restarted {unit.name} (pid {self._spawn(unit)})")
        except Exception as exc:  # counts as one more crash, retried by the same policy
            return self._schedule_restart(unit, f"restart failed: {exc}", now)
        return True

    # -- internals -------------------------------------------------------------------

    def _spawn(self, child: _Child) -> int:
        # A new session puts the child in its own process group: Ctrl-C at the terminal
        # reaches only the supervisor, which then stops the children in order.
        child.proc = subprocess.Popen(
            child.argv,
            env=child.env,
            cwd=child.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert child.proc.stdout is not None
        child.reader = threading.Thread(
            target=self._pump,
            args=(child.name, child.proc.stdout),
            name=f"supervisor-{child.name}",
            daemon=True,
        )
        child.reader.start()
        return child.proc.pid

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        log = self._open_log(name)
        showing = False  # inside a shown warning/error and its traceback
        try:
            for raw in iter(stream.readline, b""):
                # Children may print anything; a bad byte must not kill the log stream.
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if log is not None:
                    log.write(text + "\n")
                showing = bool(_IMPORTANT.search(text)) or (
                    showing and bool(_CONTINUATION.match(text))
                )
                if not self.quiet or showing:
                    self._write(name, text)
        finally:
            stream.close()
            if log is not None:
                log.close()

    def _open_log(self, name: str) -> TextIO | None:
        if self.log_dir is None:
            return None
        # Line-buffered: a person tailing the file sees each line as it is written.
        return (self.log_dir / f"{name}.log").open("a", buffering=1, errors="replace")

    def _log(self, message: str) -> None:
        """A routine message: on the terminal unless quiet, and in supervisor.log."""
        if self.log_dir is not None:
            with contextlib.suppress(OSError), (self.log_dir / "supervisor.log").open("a") as f:
                f.write(message + "\n")
        if not self.quiet:
            self._write("supervisor", message)

    def _notice(self, message: str) -> None:
        """A message a person must see (a crash, a restart, giving up)."""
        if self.log_dir is not None:
            with contextlib.suppress(OSError), (self.log_dir / "supervisor.log").open("a") as f:
                f.write(message + "\n")
        if self._say is not None:
            with self._write_lock:
                self._say(message)
        else:
            self._write("supervisor", message)

    def _write(self, name: str, text: str) -> None:
        width = max([len("supervisor"), *(len(c.name) for c in self._children)])
        out = self._output if self._output is not None else sys.stdout
        with self._write_lock:
            out.write(f"{f'[{name}]':<{width + 2}} {text}\n")
            out.flush()

    def _install_signal_handlers(self) -> dict[int, object]:
        # signal.signal only works in the main thread; elsewhere request_stop() is the way.
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stop_requested = True

        return {sig: signal.signal(sig, on_signal) for sig in _STOP_SIGNALS}

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, object]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]  # what signal.signal returned


def _signal_group(child: _Child, sig: signal.Signals) -> None:
    assert child.proc is not None
    # pgid == pid because each child leads its own session; a lookup error means the
    # whole group is already gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, sig)


# -- readiness helpers ---------------------------------------------------------------


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    """Return once `host:port` accepts a TCP connection; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{host}:{port} not accepting after {timeout:g}s") from exc
        time.sleep(0.05)


def wait_for_http(url: str, timeout: float = 30.0) -> None:
    """Return once GET `url` answers below 500; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2.0):
                return
        except urllib.error.HTTPError as exc:
            # 4xx means the server is up and routing; 5xx means it is not ready yet.
            if exc.code < 500:
                return
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} not ready after {timeout:g}s ({last})")
        time.sleep(0.1)
