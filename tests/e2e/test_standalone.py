"""`editqueue standalone` as a new user runs it: embedded servers, demo, Ctrl-C, restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from editqueue.supervisor import free_port

pytestmark = pytest.mark.slow


def _start(data_dir: Path, port: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env = {k: v for k, v in env.items() if not k.startswith("EDITQUEUE_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "editqueue",
            "standalone",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--workers",
            "4",
            *extra,
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait_for_text(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace")
        if text in content:
            return content
        if proc.poll() is not None:
            break
        time.sleep(0.5)
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


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: as root, the embedded PostgreSQL runs as its own user,
    # and pytest resets /tmp/pytest-of-root to 0700 when another session starts.
    path = Path(tempfile.mkdtemp(prefix="eq-standalone-"))
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


def test_demo_then_ctrl_c_then_restart_reuses_the_data(tmp_path: Path, data_dir: Path) -> None:
    port = free_port()
    log = tmp_path / "first.log"
    proc = _start(data_dir, port, log, "--demo")
    try:
        output = _wait_for_text(log, "jobs succeeded", proc, timeout=150)
        assert "demo: 6/6 jobs succeeded with stored outputs and verified webhooks" in output
        assert output.count("signature verified") == 6
        assert output.count("differs from input") == 6
        info = json.loads((data_dir / "standalone.json").read_text())
        assert set(info) == {"api_url", "api_key", "sandbox_url", "database_url", "redis_url"}
        assert info["api_url"] == f"http://127.0.0.1:{port}"
        children = _descendants(proc.pid)
    finally:
        if proc.poll() is None:
            _interrupt(proc, children)

    log2 = tmp_path / "second.log"
    proc = _start(data_dir, port, log2)
    try:
        _wait_for_text(log2, "is up", proc, timeout=90)
        again = json.loads((data_dir / "standalone.json").read_text())
        assert again["api_key"] == info["api_key"]
        jobs = httpx.get(
            f"{again['api_url']}/v1/jobs",
            headers={"Authorization": f"Bearer {again['api_key']}"},
        ).json()["data"]
        assert len(jobs) == 6
        assert {j["status"] for j in jobs} == {"succeeded"}
        children = _descendants(proc.pid)
    finally:
        if proc.poll() is None:
            _interrupt(proc, children)
