"""`editqueue submit` and `editqueue jobs …` as subprocesses against the test stack."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from editqueue.standalone.ports import free_port
from tests.conftest import TenantClient, data_url, editqueue_cli, png_bytes


def run_cli(
    tenant: TenantClient | None, *args: str, api_url: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("EDITQUEUE_API")}
    if tenant is not None:
        env["EDITQUEUE_API_URL"] = api_url or str(tenant.client.base_url)
        env["EDITQUEUE_API_KEY"] = tenant.key
    elif api_url:
        env["EDITQUEUE_API_URL"] = api_url
    return editqueue_cli(*args, env=env, timeout=180, cwd=cwd)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "in"
    images.mkdir()
    for index in range(3):
        (images / f"photo{index}.png").write_bytes(png_bytes(seed=index))
    (images / "notes.txt").write_text("not an image")
    return images


def test_submit_a_folder_wait_and_download_then_rerun_submits_nothing(
    tenant: TenantClient, folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ("submit", str(folder), "--prompt", "make it snowy", "--wait", "--out", str(out))
    first = run_cli(tenant, *args)
    assert first.returncode == 0, first.stderr
    assert "3 jobs in 1 batch(es): 3 new, 0 already submitted" in first.stderr
    assert "3 succeeded" in first.stderr
    assert "done 3" in first.stderr  # the progress line

    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["input"] for r in results) == ["photo0", "photo1", "photo2"]
    for record in results:
        assert record["status"] == "succeeded" and record["job_id"].startswith("job_")
        saved = out / record["outputs"][0]["path"]
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == record["outputs"][0]["sha256"]

    jobs_before = tenant.client.get("/v1/jobs").json()["data"]
    assert len(jobs_before) == 3
    again = run_cli(tenant, *args)
    assert again.returncode == 0, again.stderr
    assert "3 jobs in 1 batch(es): 0 new, 3 already submitted" in again.stderr
    assert len(tenant.client.get("/v1/jobs").json()["data"]) == 3


def test_submit_a_manifest_with_per_line_parameters(tenant: TenantClient, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(seed=5))
    manifest = tmp_path / "work.jsonl"
    manifest.write_text(
        json.dumps({"image": "a.png", "prompt": "autumn", "seed": 7, "name": "first"})
        + "\n\n"
        + json.dumps({"image": "a.png", "prompt": "winter", "metadata": {"sku": "B"}})
        + "\n"
    )
    result = run_cli(tenant, "submit", str(manifest), "--metadata", "campaign=x")
    assert result.returncode == 0, result.stderr
    assert "2 jobs in 1 batch(es): 2 new" in result.stderr
    jobs = tenant.client.get("/v1/jobs").json()["data"]
    by_prompt = {j["prompt"]: j for j in jobs}
    assert by_prompt["autumn"]["params"]["seed"] == 7
    assert by_prompt["winter"]["metadata"] == {"campaign": "x", "sku": "B"}


def test_jobs_list_get_wait_cancel(tenant: TenantClient, folder: Path) -> None:
    submitted = run_cli(tenant, "submit", str(folder / "photo0.png"), "--prompt", "p")
    assert submitted.returncode == 0, submitted.stderr
    listed = run_cli(tenant, "jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    job_id = json.loads(listed.stdout)["data"][0]["id"]

    table = run_cli(tenant, "jobs", "list")
    assert table.stdout.splitlines()[0].split() == [
        "ID",
        "STATUS",
        "MODEL",
        "PROVIDER",
        "CREATED",
        "PROMPT",
    ]
    assert job_id in table.stdout

    waited = run_cli(tenant, "jobs", "wait", job_id, "--json")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)[0]["status"] == "succeeded"

    shown = run_cli(tenant, "jobs", "get", job_id)
    assert shown.returncode == 0 and "succeeded" in shown.stdout and job_id in shown.stdout
    as_json = run_cli(tenant, "jobs", "get", job_id, "--json")
    assert json.loads(as_json.stdout)["id"] == job_id

    finished = run_cli(tenant, "jobs", "cancel", job_id)
    assert finished.returncode != 0
    assert "409 job_finished" in finished.stderr and "Traceback" not in finished.stderr


def test_clear_errors(tenant: TenantClient, folder: Path) -> None:
    no_key = run_cli(None, "jobs", "list", api_url=str(tenant.client.base_url))
    assert no_key.returncode != 0 and "EDITQUEUE_API_KEY" in no_key.stderr
    down = run_cli(tenant, "jobs", "list", api_url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode != 0 and "cannot reach the API" in down.stderr
    missing = run_cli(tenant, "jobs", "get", "job_nope")
    assert missing.returncode != 0 and "404 not_found" in missing.stderr
    bad = run_cli(tenant, "submit", str(folder), "--prompt", "x" * 900)
    assert bad.returncode != 0
    assert "jobs[0].prompt" in bad.stderr and "(photo0)" in bad.stderr
    assert "Traceback" not in bad.stderr + no_key.stderr + down.stderr + missing.stderr
    assert tenant.key not in bad.stderr + down.stderr


def test_submit_skips_bad_files_and_reports_them(tenant: TenantClient, folder: Path) -> None:
    (folder / "broken.png").write_bytes(b"not really a png")
    (folder / "tiny.png").write_bytes(png_bytes(size=(10, 10)))
    missing = folder / "gone.jpg"
    result = run_cli(tenant, "submit", str(folder), str(missing), "--prompt", "p")
    assert result.returncode == 0, result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 3, result.stderr
    assert any("broken.png" in line for line in skipped)
    assert any("tiny.png" in line and "more than 14 px" in line for line in skipped)
    assert any("gone.jpg: no such file or folder" in line for line in skipped)
    assert "3 jobs in 1 batch(es): 3 new, 0 already submitted, 3 input(s) skipped" in result.stderr
    assert len(tenant.client.get("/v1/jobs").json()["data"]) == 3

    nothing = run_cli(tenant, "submit", str(folder / "broken.png"), "--prompt", "p")
    assert nothing.returncode == 1
    assert "skipped" in nothing.stderr and "no images to submit" in nothing.stderr


def test_jobs_list_takes_every_filter(tenant: TenantClient) -> None:
    image = data_url(png_bytes())
    first = tenant.create_job(model="seededit-3.0", prompt="a", image=image, metadata={"run": "7"})
    second = tenant.create_job(model="seededit-3.0", prompt="b", image=image, metadata={"run": "8"})
    provider = tenant.wait_job(first["id"])["provider"]
    tenant.wait_job(second["id"])

    def listed(*args: str) -> list[str]:
        result = run_cli(tenant, "jobs", "list", "--json", *args)
        assert result.returncode == 0, result.stderr
        return [j["id"] for j in json.loads(result.stdout)["data"]]

    assert listed("--metadata", "run=7", "--status", "succeeded", "--model", "seededit-3.0") == [
        first["id"]
    ]
    # created_after is inclusive, created_before exclusive.
    window = ("--created-after", first["created_at"], "--created-before", second["created_at"])
    assert listed(*window, "--provider", provider) == [first["id"]]
    assert listed("--provider", "nobody") == []
    assert listed("--limit", "1") == [second["id"]]
    assert listed("--batch", "bat_01J00000000000000000000000") == []
