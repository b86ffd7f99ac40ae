"""Each benchmark runs end to end in a tiny configuration (keeps bench/ from rotting).

No timing is asserted: benchmarks report figures, they do not judge them here.
"""

from __future__ import annotations

import pytest

from bench import e2e, inflight, latency, submit

pytestmark = pytest.mark.slow


def test_submit_bench_runs() -> None:
    report = submit.run(submit.SubmitConfig(runs=1, seconds=1, batch_size=20, threads=2))
    assert len(report.rows) == 4 and "bare" in report.rows[0][0]
    assert "inline" in report.rows[3][0] and report.rows[3][1].endswith(" s")


def test_e2e_bench_runs() -> None:
    report = e2e.run(e2e.E2EConfig(jobs=10, runs=1, timeout=120))
    assert len(report.rows) == 2


def test_inflight_bench_runs() -> None:
    config = inflight.InflightConfig(jobs=20, latency=2, workers=1, budget=90, baseline_jobs=10)
    report = inflight.run(config)
    assert report.rows[0][1] == "20 / 20"
    assert report.rows[1][1].endswith("(10 / 10 jobs)")


def test_latency_bench_runs() -> None:
    report = latency.run(latency.LatencyConfig(jobs=2, gap=0.1, latency=1))
    assert [row[1] for row in report.rows] == ["2", "2"]
