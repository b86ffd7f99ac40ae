"""`editqueue standalone` as a new user runs it: embedded servers, demo, healing, Ctrl-C, restart.

One stack is started for the module (it is slow to start) and the tests run in file order
against it: the demo, the audit of what it stored, the restarts after SIGKILLs; the last
test stops it with Ctrl-C and starts it again without `--demo` to check the data is reused
and that user URLs on loopback are refused as in production.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from editqueue.standalone.ports import free_port
from tests.conftest import data_url, png_bytes

pytestmark = pytest.mark.slow

RESTARTED = "exited (signal 9); restarting in"


def _clean_env() -> dict[str, str]:
    """The environment of a new user: no URLs, no EDITQUEUE_* (so no URL allowance)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {k: v for k, v in env.items() if not k.startswith("EDITQUEUE_")}


def _start(data_dir: Path, port: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "editqueue", "standalone", "--data-dir", str(data_dir)),
            *("--port", str(port), "--workers", "4", *extra),
        ],
        env=_clean_env(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait_for_text(
    log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float, count: int = 1
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace")
        if content.count(text) >= count:
            return content
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not seen; output:\n{log.read_text(errors='replace')[-4000:]}")


def _descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _interrupt(proc: subprocess.Popen[bytes], children: list[int]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    time.sleep(1)
    alive = [
        pid
        for pid in children
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == [], f"left running after Ctrl-C: {alive}"


@dataclass
class Standalone:
    """The module's standalone: its process, terminal log and data dir."""

    proc: subprocess.Popen[bytes]
    log: Path
    data_dir: Path
    port: int
    workdir: Path
    info: dict[str, Any] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.info["api_url"],
            headers={"Authorization": f"Bearer {self.info['api_key']}"},
            timeout=30.0,
        )

    def child(self, *words: str) -> psutil.Process:
        """The supervised child whose command line has all of `words`."""
        for process in psutil.Process(self.proc.pid).children():
            cmdline = " ".join(process.cmdline())
            if all(word in cmdline for word in words):
                return process
        raise AssertionError(f"no child running {words}")


@pytest.fixture(scope="module")
def standalone() -> Iterator[Standalone]:
    # Not under pytest's tmp_path: as root, the embedded PostgreSQL runs as its own user,
    # and pytest resets /tmp/pytest-of-root to 0700 when another session starts.
    workdir = Path(tempfile.mkdtemp(prefix="eq-standalone-"))
    data_dir, port, log = workdir / "data", free_port(), workdir / "first.log"
    proc = _start(data_dir, port, log, "--demo")
    running = Standalone(proc, log, data_dir, port, workdir)
    try:
        _wait_for_text(log, "jobs succeeded", proc, timeout=150)
        running.info = json.loads((data_dir / "standalone.json").read_text())
        yield running
    finally:
        if running.proc.poll() is None:
            _interrupt(running.proc, _descendants(running.proc.pid))
        shutil.rmtree(workdir, ignore_errors=True)


def _run_job(standalone: Standalone, timeout: float = 60.0) -> dict[str, Any]:
    """A normal sandbox job, through the public API, until it ends."""
    with standalone.client() as client:
        deadline = time.monotonic() + timeout
        while True:  # the API itself may be restarting
            try:
                answer = client.post(
                    "/v1/jobs",
                    json={
                        "model": "seededit-3.0",
                        "prompt": "heal",
                        "image": data_url(png_bytes()),
                    },
                )
                if answer.status_code < 500:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not come back"
            time.sleep(0.5)
        assert answer.status_code in (200, 201, 202), answer.text
        job_id = answer.json()["id"]
        while time.monotonic() < deadline:
            with_status = client.get(f"/v1/jobs/{job_id}")
            if with_status.status_code == 200 and with_status.json()["status"] in (
                "succeeded",
                "failed",
                "canceled",
            ):
                return with_status.json()
            time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish within {timeout:g}s")


# -- the demo and what it stored --------------------------------------------------------


def test_the_demo_ends_with_verified_webhooks_and_a_quiet_terminal(standalone: Standalone) -> None:
    output = standalone.output()
    assert "demo: 6/6 jobs succeeded with stored outputs and verified webhooks" in output
    assert output.count("signature verified") == 6
    assert output.count("differs from input") == 6
    # Only the banner and the demo's report: access logs and banners go to DATA_DIR/logs.
    assert "[api]" not in output and "[worker]" not in output and "celery@" not in output
    assert len(output.splitlines()) < 60
    assert "celery@" in (standalone.data_dir / "logs" / "worker.log").read_text()
    info = standalone.info
    assert set(info) == {
        *("api_url", "api_key", "sandbox_url", "database_url", "redis_url"),
        *("data_dir", "storage_url"),
    }
    assert info["api_url"] == f"http://127.0.0.1:{standalone.port}"
    assert info["data_dir"] == str(standalone.data_dir)
    assert info["storage_url"] == f"file://{standalone.data_dir / 'storage'}"


def _audit(standalone: Standalone, *args: str) -> subprocess.CompletedProcess[str]:
    # From another directory, as an operator would: nothing but standalone.json to go by.
    return subprocess.run(
        [sys.executable, "-m", "editqueue", "audit", *args],
        env={**_clean_env(), "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        cwd=standalone.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_audit_finds_what_the_worker_stored(standalone: Standalone) -> None:
    result = _audit(standalone, "--data-dir", str(standalone.data_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no object stored" not in result.stdout
    assert "0 violation(s)" in result.stderr
    # EDITQUEUE_DATA_DIR names the stack just as well.
    env_run = subprocess.run(
        [sys.executable, "-m", "editqueue", "audit"],
        env={
            **_clean_env(),
            "EDITQUEUE_DATA_DIR": str(standalone.data_dir),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
        cwd=standalone.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert env_run.returncode == 0, env_run.stdout + env_run.stderr


def test_audit_of_a_storage_dir_that_does_not_exist_is_refused(standalone: Standalone) -> None:
    missing = standalone.workdir / "nowhere"
    result = subprocess.run(
        [sys.executable, "-m", "editqueue", "audit", "--data-dir", str(standalone.data_dir)],
        env={
            **_clean_env(),
            "EDITQUEUE_STORAGE_URL": f"file://{missing}",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
        cwd=standalone.workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"storage directory {missing} does not exist" in result.stderr
    assert "no object stored" not in result.stdout


# -- healing ---------------------------------------------------------------------------


def _postmaster_pid(standalone: Standalone) -> int:
    return int((standalone.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("worker", ("celery", "worker")),
        ("redis", ("redis-server",)),
        ("api", ("gunicorn",)),
        ("beat", ("celery", "beat")),
        ("sandbox", ("-m", "sandbox")),
        ("postgres", ()),
    ],
)
def test_a_killed_piece_is_restarted_and_jobs_run_again(
    standalone: Standalone, name: str, words: tuple[str, ...]
) -> None:
    before = standalone.output().count(RESTARTED) + standalone.output().count("(postmaster gone)")
    pid = _postmaster_pid(standalone) if name == "postgres" else standalone.child(*words).pid
    os.kill(pid, signal.SIGKILL)
    line = (
        "postgres exited (postmaster gone); restarting in"
        if name == "postgres"
        else f"{name} {RESTARTED}"
    )
    _wait_for_text(standalone.log, line, standalone.proc, timeout=30)
    # A job runs end to end on the healed stack (Celery reconnects to a new Redis itself).
    assert _run_job(standalone)["status"] == "succeeded"
    output = standalone.output()
    assert output.count(RESTARTED) + output.count("(postmaster gone)") == before + 1
    assert standalone.proc.poll() is None


# -- restart without --demo: data reused, loopback refused ---------------------------


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self._record()

    def do_POST(self) -> None:
        self._record()

    def _record(self) -> None:
        self.hits.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback_receiver() -> Iterator[tuple[int, list[str]]]:
    hits: list[str] = []
    handler = type("Recorder", (_Recorder,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1]), hits
    server.shutdown()
    server.server_close()


def _refuses_loopback(standalone: Standalone, port: int) -> None:
    image = data_url(png_bytes())
    with standalone.client() as client:
        for url in (f"http://2130706433:{port}/x.png", f"http://127.0.0.1:{port}/x.png"):
            answer = client.post(
                "/v1/jobs", json={"model": "seededit-3.0", "prompt": "p", "image": url}
            )
            assert answer.status_code == 422, answer.text
        hook = f"http://127.0.0.1:{port}/hooks"
        answer = client.post(
            "/v1/jobs",
            json={"model": "seededit-3.0", "prompt": "p", "image": image, "webhook_url": hook},
        )
        assert answer.status_code == 422, answer.text
        answer = client.post("/v1/webhook-endpoints", json={"url": hook})
        assert answer.status_code == 422, answer.text


def test_ctrl_c_then_a_restart_reuses_the_data_and_refuses_loopback(
    standalone: Standalone, loopback_receiver: tuple[int, list[str]]
) -> None:
    _interrupt(standalone.proc, _descendants(standalone.proc.pid))
    jobs_before = standalone.info
    log = standalone.workdir / "second.log"
    standalone.proc, standalone.log = _start(standalone.data_dir, standalone.port, log), log
    _wait_for_text(log, "is up", standalone.proc, timeout=90)
    standalone.info = json.loads((standalone.data_dir / "standalone.json").read_text())
    assert standalone.info["api_key"] == jobs_before["api_key"]
    with standalone.client() as client:
        jobs = client.get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert len(jobs) >= 6 + 6  # the demo's and one per restart test
    assert {j["status"] for j in jobs} == {"succeeded"}

    port, hits = loopback_receiver
    _refuses_loopback(standalone, port)
    # A normal sandbox job still succeeds, and nothing ever reached the receiver.
    assert _run_job(standalone)["status"] == "succeeded"
    time.sleep(1)
    assert hits == []
