"""The core type-checks: `mypy` (configured in pyproject.toml) passes on editqueue, api, worker."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Outside the tree, so a fresh clone stays clean; kept between runs, so a re-run takes seconds.
CACHE = Path(tempfile.gettempdir()) / "editqueue-mypy-cache"


def test_mypy() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(CACHE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
