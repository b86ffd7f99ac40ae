"""`/docs` in a real Chromium: Swagger UI renders the OpenAPI 3.1 document, offline, under CSP."""

from __future__ import annotations

import httpx

from tests.browser.conftest import SCREENSHOTS
from tests.stack import Stack


def test_docs_page_lists_the_operations(page, stack: Stack) -> None:
    outside: list[str] = []
    # Offline: every request the page makes stays on the API's own origin.
    page.on(
        "request",
        lambda req: outside.append(req.url) if not req.url.startswith(stack.api_url) else None,
    )
    page.goto(f"{stack.api_url}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "docs.png"), full_page=False)

    text = page.inner_text("body")
    assert "Unable to render this definition" not in text
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/batches", "/healthz"):
        assert path in [p.replace("\u200b", "") for p in paths], (path, paths)
    assert page.locator(".opblock-post").count() >= 5
    assert "OAS 3.1" in page.inner_text(".information-container")
    assert outside == []
    csp = httpx.get(f"{stack.api_url}/docs").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
