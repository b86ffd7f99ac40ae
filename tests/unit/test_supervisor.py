"""Supervisor: real child processes, prefixed output, shutdown with no orphans."""

from __future__ import annotations

import http.server
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from editqueue.standalone.ports import free_port
from editqueue.standalone.supervisor import (
    RestartPolicy,
    Supervisor,
    wait_for_http,
    wait_for_port,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


SLEEPER = "import time; print('up', flush=True); time.sleep(60)"


def gone(pid: int) -> bool:
    """True when `pid` no longer runs (an unreaped zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def supervisor(out: io.StringIO) -> Iterator[Supervisor]:
    sup = Supervisor(stop_timeout=5.0, output=out)
    yield sup
    sup.stop()


def test_output_is_prefixed_and_stop_ends_every_process(
    supervisor: Supervisor, out: io.StringIO
) -> None:
    # The second child forks a grandchild into its process group: it must not survive.
    grandchild = (
        "import subprocess, sys, time;"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print('grandchild', p.pid, flush=True); time.sleep(60)"
    )
    supervisor.add("api", py("print('hello from api'); import time; time.sleep(60)"))
    supervisor.add("worker", py(grandchild))
    supervisor.start()
    eventually(lambda: "hello from api" in out.getvalue() and "grandchild" in out.getvalue())

    lines = out.getvalue().splitlines()
    assert "[api]        hello from api" in lines
    grandchild_pid = int(next(ln for ln in lines if "grandchild" in ln).split()[-1])
    pids = [*supervisor.pids.values(), grandchild_pid]
    assert all(not gone(pid) for pid in pids)

    supervisor.stop()
    eventually(lambda: all(gone(pid) for pid in pids))
    assert "[supervisor] api stopped (code -15)" in out.getvalue()


def test_a_child_ignoring_sigterm_is_killed_after_the_timeout(out: io.StringIO) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print('ready', flush=True); time.sleep(60)"
    )
    with Supervisor(stop_timeout=0.5, output=out) as sup:
        sup.add("stubborn", py(stubborn))
        sup.start()
        eventually(lambda: "ready" in out.getvalue())  # handler installed
        pid = sup.pids["stubborn"]
        started = time.monotonic()
        sup.stop()
        elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 5
    assert gone(pid)
    assert "stubborn ignored SIGTERM" in out.getvalue()
    assert "stubborn stopped (code -9)" in out.getvalue()


def test_a_child_exiting_makes_wait_stop_the_rest_and_fail(
    supervisor: Supervisor, out: io.StringIO
) -> None:
    supervisor.add("api", py(SLEEPER))
    supervisor.add("worker", py("import time; time.sleep(0.3); print('bye'); raise SystemExit(3)"))
    supervisor.start()
    api_pid = supervisor.pids["api"]

    assert supervisor.wait() == 3
    assert supervisor.failed == "worker"
    assert gone(api_pid)
    text = out.getvalue()
    assert text.index("[worker]") < text.index("worker exited unexpectedly (code 3)")


def test_a_clean_exit_of_a_service_still_counts_as_failure(supervisor: Supervisor) -> None:
    supervisor.add("beat", py("pass"))
    supervisor.start()
    assert supervisor.wait() == 1


def test_sigterm_to_the_supervisor_stops_children_and_returns_zero(
    supervisor: Supervisor,
) -> None:
    supervisor.add("api", py(SLEEPER))
    supervisor.start()
    pid = supervisor.pids["api"]
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert supervisor.wait() == 0
    finally:
        timer.cancel()
    assert gone(pid)
    assert supervisor.failed is None
    assert signal.getsignal(signal.SIGTERM) is before


def test_request_stop_from_another_thread(supervisor: Supervisor) -> None:
    supervisor.add("api", py(SLEEPER))
    supervisor.start()
    threading.Timer(0.2, supervisor.request_stop).start()
    assert supervisor.wait() == 0


def test_env_and_cwd_reach_the_child(
    supervisor: Supervisor, out: io.StringIO, tmp_path: Path
) -> None:
    supervisor.add(
        "env",
        py("import os; print(os.environ['EQ_TEST'], os.getcwd(), flush=True)"),
        env={"EQ_TEST": "marker"},
        cwd=tmp_path,
    )
    supervisor.start()
    eventually(lambda: "marker" in out.getvalue())
    assert f"[env]        marker {tmp_path}" in out.getvalue()


def test_a_child_that_cannot_spawn_stops_those_already_started(out: io.StringIO) -> None:
    sup = Supervisor(stop_timeout=5.0, output=out)
    sup.add("api", py(SLEEPER))
    sup.add("broken", ["/nonexistent/binary"])
    with pytest.raises(FileNotFoundError):
        sup.start()
    eventually(lambda: gone(sup.pids["api"]))


def test_duplicate_names_are_refused(supervisor: Supervisor) -> None:
    supervisor.add("api", py("pass"))
    with pytest.raises(ValueError):
        supervisor.add("api", py("pass"))


# -- restarts ---------------------------------------------------------------------------

FAST = RestartPolicy(first_delay=0.1, max_delay=0.4, max_crashes=4, window=60.0)


def _run_wait(sup: Supervisor) -> tuple[threading.Thread, dict[str, int]]:
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", sup.wait()), daemon=True)
    thread.start()
    return thread, result


def test_restart_delays_double_up_to_the_cap() -> None:
    policy = RestartPolicy(first_delay=0.5, max_delay=10.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [0.5, 1, 2, 4, 8, 10, 10]


def test_a_killed_child_is_restarted_with_one_line(out: io.StringIO) -> None:
    notices: list[str] = []
    sup = Supervisor(stop_timeout=5.0, output=out, restart=FAST, say=notices.append)
    sup.add("worker", py(SLEEPER))
    sup.add("api", py(SLEEPER))
    sup.start()
    first, api_pid = sup.pids["worker"], sup.pids["api"]
    thread, result = _run_wait(sup)
    try:
        os.kill(first, signal.SIGKILL)
        eventually(lambda: sup.pids["worker"] != first and "up" in out.getvalue())
        assert notices == ["worker exited (signal 9); restarting in 0.1 s"]
        assert sup.pids["api"] == api_pid  # the others were left alone
        second = sup.pids["worker"]
        os.kill(second, signal.SIGKILL)
        eventually(lambda: sup.pids["worker"] != second)
        assert notices[1] == "worker exited (signal 9); restarting in 0.2 s"
        assert not gone(sup.pids["worker"])
    finally:
        sup.request_stop()
        thread.join(10)
    assert result == {"code": 0}
    assert gone(sup.pids["worker"]) and gone(api_pid)


def test_too_many_crashes_in_the_window_stop_everything(out: io.StringIO) -> None:
    notices: list[str] = []
    sup = Supervisor(stop_timeout=5.0, output=out, restart=FAST, say=notices.append)
    sup.add("api", py(SLEEPER))
    sup.add("beat", py("raise SystemExit(2)"))
    sup.start()
    api_pid = sup.pids["api"]
    assert sup.wait() == 1
    assert sup.failed == "beat"
    assert gone(api_pid)
    assert notices[:3] == [
        "beat exited (code 2); restarting in 0.1 s",
        "beat exited (code 2); restarting in 0.2 s",
        "beat exited (code 2); restarting in 0.4 s",
    ]
    assert notices[3] == "beat exited (code 2), 4 times in 60 s; giving up and stopping everything"
    assert len(notices) == 4


def test_a_watched_server_is_restarted_by_the_same_policy(out: io.StringIO) -> None:
    # A real process this supervisor did not spawn, as the embedded PostgreSQL is.
    procs = [subprocess.Popen(py(SLEEPER), stdout=subprocess.DEVNULL)]

    def exit_status() -> str | None:
        code = procs[-1].poll()
        return None if code is None else f"signal {-code}"

    def restart() -> None:
        procs.append(subprocess.Popen(py(SLEEPER), stdout=subprocess.DEVNULL))

    notices: list[str] = []
    sup = Supervisor(stop_timeout=5.0, output=out, restart=FAST, say=notices.append)
    sup.add("api", py(SLEEPER))
    sup.watch("redis", exit_status=exit_status, restart=restart)
    sup.start()
    thread, result = _run_wait(sup)
    try:
        procs[0].kill()
        eventually(lambda: len(procs) == 2)
        assert notices == ["redis exited (signal 9); restarting in 0.1 s"]
        assert procs[1].poll() is None
    finally:
        sup.request_stop()
        thread.join(10)
        for proc in procs:
            proc.kill()
            proc.wait()
    assert result == {"code": 0}


def test_quiet_mode_logs_everything_to_files_and_shows_only_problems(
    out: io.StringIO, tmp_path: Path
) -> None:
    chatty = (
        "import sys; print('GET /healthz 200'); print('[x: WARNING/MainProcess] disk low');"
        "print('Traceback (most recent call last):'); print('  File \"x.py\", line 1');"
        "print('ValueError: boom'); print('after the traceback', flush=True);"
        "import time; time.sleep(60)"
    )
    sup = Supervisor(stop_timeout=5.0, output=out, log_dir=tmp_path / "logs", quiet=True)
    sup.add("api", py(chatty))
    sup.start()
    log = tmp_path / "logs" / "api.log"
    try:
        eventually(lambda: log.exists() and "after the traceback" in log.read_text())
    finally:
        sup.stop()
    assert log.read_text().splitlines() == [
        "GET /healthz 200",
        "[x: WARNING/MainProcess] disk low",
        "Traceback (most recent call last):",
        '  File "x.py", line 1',
        "ValueError: boom",
        "after the traceback",
    ]
    shown = out.getvalue()
    assert "disk low" in shown and '  File "x.py"' in shown and "ValueError: boom" in shown
    assert "GET /healthz" not in shown and "after the traceback" not in shown
    assert "started api" not in shown  # routine notes go to supervisor.log only
    assert "started api" in (tmp_path / "logs" / "supervisor.log").read_text()


# -- readiness helpers ------------------------------------------------------------------


def test_wait_for_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        wait_for_port("127.0.0.1", listener.getsockname()[1], timeout=2)
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", free_port(), timeout=0.2)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503 if self.path == "/starting" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_wait_for_http_accepts_any_answer_below_500() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        wait_for_http(f"{base}/missing", timeout=2)
        with pytest.raises(TimeoutError, match="HTTP 503"):
            wait_for_http(f"{base}/starting", timeout=0.3)
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(TimeoutError):
        wait_for_http(f"http://127.0.0.1:{free_port()}/", timeout=0.2)


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
