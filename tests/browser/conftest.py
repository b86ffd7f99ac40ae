"""A real headless Chromium (Debian's package) driven by Playwright, signed in to the console.

Playwright's own browser download is not used: the tests launch `/usr/bin/chromium`, and
skip with the reason below when it is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import TenantClient

CHROMIUM = os.environ.get("EDITQUEUE_TEST_CHROMIUM", "/usr/bin/chromium")
SKIP_REASON = (
    f"chromium not found at {CHROMIUM}; apt-get install -y chromium to run the browser tests"
)
SCREENSHOTS = Path(__file__).parent / "screenshots"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without Chromium every browser test is skipped, saying how to enable them."""
    if Path(CHROMIUM).exists():
        return
    marker = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(marker)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say it once at the end too, where a person looks."""
    if not Path(CHROMIUM).exists() and terminalreporter.stats.get("skipped"):
        terminalreporter.write_line(f"browser tests skipped: {SKIP_REASON}", yellow=True)


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[object]:
    """One headless Chromium for the session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(chromium_browser) -> Iterator[object]:
    """A fresh browser context (no cookies) and page; fails the test on any CSP violation
    or script error, so the strict policy is exercised by every page the test opens."""
    context = chromium_browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    yield page
    context.close()
    assert not problems, problems


@pytest.fixture
def sign_in(stack) -> Callable[[object, TenantClient], None]:
    """Sign a page in with a tenant's API key through the form."""

    def _sign_in(page, tenant: TenantClient) -> None:
        page.goto(f"{stack.api_url}/console/login")
        page.fill("#api_key", tenant.key)
        page.click("#sign-in")
        page.wait_for_url("**/console/jobs**")

    return _sign_in


@pytest.fixture
def shoot() -> Callable[[object, str], Path]:
    """Write a full-page screenshot under tests/browser/screenshots/ (kept out of git)."""
    SCREENSHOTS.mkdir(exist_ok=True)

    def _shoot(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _shoot
