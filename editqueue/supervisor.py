"""Run the child processes of `editqueue standalone`: prefixed output, one shutdown for all.

Policy on a child that dies: the supervisor logs it and stops everything, and `wait()`
returns non-zero. It does not restart children: in standalone mode a crash loop would hide
the bug behind a scrolling log, and restarting the whole command is cheap because every
piece of state lives in PostgreSQL and the Redis AOF. Production restarts belong to the
service manager (systemd, Docker), which runs each process on its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from editqueue.startstop import StartStop

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How often wait() looks at its children. Polling (rather than waking from a signal
# handler through a lock) keeps the handlers trivial and free of deadlock risks.
_POLL_INTERVAL = 0.1


@dataclass
class _Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None
    proc: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None


class Supervisor(StartStop):
    """Starts named children, prefixes their output, and stops them all together."""

    def __init__(self, *, stop_timeout: float = 10.0, output: TextIO | None = None) -> None:
        self.stop_timeout = stop_timeout
        self.failed: str | None = None  # name of the child whose death ended wait()
        self._output = output
        self._children: list[_Child] = []
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
        if any(c.name == name for c in self._children):
            raise ValueError(f"a child named {name!r} is already registered")
        # Python children buffer stdout when it is a pipe; unbuffered output keeps the
        # prefixed log in step with what the children do.
        merged = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._children.append(
            _Child(name, list(argv), merged, Path(cwd) if cwd is not None else None)
        )

    @property
    def pids(self) -> dict[str, int]:
        """The pid of every started child, by name."""
        return {c.name: c.proc.pid for c in self._children if c.proc is not None}

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start every registered child; if one cannot be spawned, stop the others and raise."""
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
        """Block until SIGINT/SIGTERM, request_stop() or a child's exit; stop all; exit code."""
        previous = self._install_signal_handlers()
        try:
            while not self._stop_requested:
                dead = self._first_exited_child()
                if dead is not None:
                    code = dead.proc.returncode if dead.proc else 1
                    self.failed = dead.name
                    if dead.reader is not None:
                        dead.reader.join(timeout=1.0)  # its last words before our verdict
                    self._log(f"{dead.name} exited unexpectedly (code {code}); stopping everything")
                    self.stop()
                    # A long-running service that exits 0 on its own is still a failure.
                    return code if code and code > 0 else 1
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
        for raw in iter(stream.readline, b""):
            # Children may print anything; a bad byte must not kill the log stream.
            self._write(name, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        stream.close()

    def _log(self, message: str) -> None:
        self._write("supervisor", message)

    def _write(self, name: str, text: str) -> None:
        width = max([len("supervisor"), *(len(c.name) for c in self._children)])
        out = self._output if self._output is not None else sys.stdout
        with self._write_lock:
            out.write(f"{f'[{name}]':<{width + 2}} {text}\n")
            out.flush()

    def _first_exited_child(self) -> _Child | None:
        for child in self._children:
            if child.proc is not None and child.proc.poll() is not None:
                return child
        return None

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
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _signal_group(child: _Child, sig: signal.Signals) -> None:
    assert child.proc is not None
    # pgid == pid because each child leads its own session; a lookup error means the
    # whole group is already gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, sig)


# -- readiness helpers ---------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on `host` (another process may still take it before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
