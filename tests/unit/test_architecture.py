"""The house rules of docs/architecture.md, read from the source's import statements."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "editqueue"
# The tooling inside the core: built on the domain, never imported by it.
TOOLING = ("editqueue.cli", "editqueue.standalone")
# What the domain must not know: the faces, the frameworks, the emulator.
FORBIDDEN_IN_DOMAIN = ("flask", "werkzeug", "celery", "kombu", "gevent", "api", "worker")
FORBIDDEN_IN_DOMAIN += ("sandbox", *TOOLING)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            # `from editqueue import cli` names a package through its parent.
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _domain_sources() -> list[Path]:
    # `python -m editqueue` is the CLI's entry point, not domain code.
    tooling = (*TOOLING, "editqueue.__main__")
    return [p for p in _sources("editqueue") if not _within(_module_name(p), tooling)]


def _not_standalone(paths: list[Path]) -> list[Path]:
    # The standalone launcher is the one place that starts the sandbox.
    return [p for p in paths if not _within(_module_name(p), ("editqueue.standalone",))]


@pytest.mark.parametrize("path", _domain_sources(), ids=_module_name)
def test_the_domain_knows_nothing_of_faces_frameworks_or_tooling(path: Path) -> None:
    wrong = sorted({n for n in _imports(path) if _within(n, FORBIDDEN_IN_DOMAIN)})
    assert not wrong, f"{_module_name(path)} imports {wrong}"


@pytest.mark.parametrize(
    "path", _not_standalone(_sources("editqueue", "api", "worker", "bench")), ids=_module_name
)
def test_only_the_standalone_launcher_and_tests_import_the_sandbox(path: Path) -> None:
    wrong = sorted({n for n in _imports(path) if _within(n, ("sandbox",))})
    assert not wrong, f"{_module_name(path)} imports {wrong}"


@pytest.mark.parametrize("path", _sources("api"), ids=_module_name)
def test_the_api_publishes_by_task_name_and_never_imports_the_worker(path: Path) -> None:
    # api.broker holds a Celery client to send tasks by name; the task modules stay apart.
    wrong = sorted({n for n in _imports(path) if _within(n, ("worker",))})
    assert not wrong, f"{_module_name(path)} imports {wrong}"


@pytest.mark.parametrize("path", _sources("sandbox"), ids=_module_name)
def test_the_sandbox_stands_alone(path: Path) -> None:
    wrong = sorted({n for n in _imports(path) if _within(n, ("editqueue", "api", "worker"))})
    assert not wrong, f"{_module_name(path)} imports {wrong}"


def test_the_core_shows_its_architecture_at_the_top_level() -> None:
    modules = sorted(p.name for p in CORE.glob("*.py"))
    packages = sorted(p.name for p in CORE.iterdir() if (p / "__init__.py").exists())
    assert len(modules) <= 16, modules
    assert {"jobs", "providers", "webhooks", "infra", "cli", "standalone"} <= set(packages)
