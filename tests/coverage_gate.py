"""CI gate: branch coverage of the core state machine by the unit suite alone.

Runs `tests/unit` under `coverage` (branch mode, configured in pyproject.toml) and fails
when the unit tests fail or when any module of GATED is below FAIL_UNDER percent. Run it
from the repository root: `python3 tests/coverage_gate.py`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FAIL_UNDER = 90
# The job pipeline, the webhook delivery engine, routing and intake.
GATED = (
    "editqueue/jobs/pipeline.py",
    "editqueue/webhooks/delivery.py",
    "editqueue/jobs/routing.py",
    "editqueue/jobs/intake.py",
)
ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> int:
    print("+", " ".join(args), flush=True)
    return subprocess.run(args, cwd=ROOT, check=False).returncode


def main() -> int:
    """Run the unit suite under coverage, then report the gated modules; returns the exit code."""
    python = sys.executable
    data = str(ROOT / ".coverage.unit")
    tests = _run(
        python, "-m", "coverage", "run", f"--data-file={data}", "--branch",
        "-m", "pytest", "tests/unit", "-q", "-p", "no:cacheprovider",
    )  # fmt: skip
    failed = []
    for module in GATED:
        # One report per module: the gate is each module's figure, not their sum.
        code = _run(
            python, "-m", "coverage", "report", f"--data-file={data}", f"--include={module}",
            "--show-missing", f"--fail-under={FAIL_UNDER}",
        )  # fmt: skip
        if code != 0:
            failed.append(module)
    if tests != 0:
        print(f"coverage gate: the unit suite failed (exit {tests})", file=sys.stderr)
    if failed:
        print(f"coverage gate: under {FAIL_UNDER}% branch coverage: {', '.join(failed)}")
    return 1 if tests != 0 or failed else 0


if __name__ == "__main__":
    sys.exit(main())
