"""Our logs (worker and API) say stable dotted event keys, carry fields, and keep secrets out."""

from __future__ import annotations

import ast
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from editqueue import logs

ROOT = Path(__file__).resolve().parents[2]
EVENT_MODULES = ["editqueue/jobs", "editqueue/webhooks", "editqueue/providers", "editqueue/infra"]
EVENT_MODULES += ["worker", "api", "api/console"]
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


def _log_calls() -> Iterator[tuple[str, ast.Call]]:
    for folder in EVENT_MODULES:
        for path in sorted((ROOT / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LEVELS
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "log"
                ):
                    yield f"{path.relative_to(ROOT)}:{node.lineno}", node


def _event_key(call: ast.Call) -> str | None:
    """The call's key when it is a literal dotted key with no %-arguments, else None."""
    if len(call.args) != 1 or not isinstance(call.args[0], ast.Constant):
        return None
    key = call.args[0].value
    return key if isinstance(key, str) and logs.EVENT_KEY.fullmatch(key) else None


def test_worker_side_log_calls_say_dotted_keys_listed_in_operations_doc() -> None:
    calls = list(_log_calls())
    assert len(calls) >= 15, "the scan found too few log calls: is it looking in the right place?"
    bad = [where for where, call in calls if _event_key(call) is None]
    assert not bad, f"log calls without a literal dotted event key (values go in fields): {bad}"
    doc = (ROOT / "docs/operations.md").read_text()
    section = doc.split("## Log events", 1)[1].split("\n## ", 1)[0]
    missing = sorted({k for _, c in calls if (k := _event_key(c)) and f"`{k}`" not in section})
    assert not missing, f"event keys missing from docs/operations.md (Log events): {missing}"


@pytest.fixture
def stream() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.RedactingFilter())
    logger = logging.getLogger("tests.log_events")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, out
    logger.handlers.clear()


def test_json_line_carries_key_context_and_fields_with_secrets_masked(
    stream: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = stream
    logger.handlers[0].setFormatter(logs.JsonFormatter())
    link = "https://cdn.example/out.png?x-amz-signature=deadbeef&x=1"
    with logs.bound(job_id="job_1", provider="kie"):
        logger.warning(
            "job.submit.vendor_failed",
            extra=logs.fields(provider="ark", code="rate_limited", attempt=2, link=link),
        )
    entry = json.loads(out.getvalue())
    assert entry["message"] == "job.submit.vendor_failed"
    assert entry["level"] == "warning"
    assert entry["job_id"] == "job_1"
    assert entry["provider"] == "ark"  # the event's own value beats the bound context's
    assert entry["code"] == "rate_limited"
    assert entry["attempt"] == 2
    assert "deadbeef" not in entry["link"] and entry["link"].endswith("?<redacted>")


def test_a_field_cannot_overwrite_the_line_s_own_keys(
    stream: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = stream
    logger.handlers[0].setFormatter(logs.JsonFormatter())
    logger.info("job.started", extra=logs.fields(message="other", level="error"))
    entry = json.loads(out.getvalue())
    assert (entry["message"], entry["level"]) == ("job.started", "info")


def test_text_line_is_level_key_and_pairs_and_other_lines_keep_their_logger(
    stream: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = stream
    logger.handlers[0].setFormatter(logs.TextFormatter())
    secret = "whsec_" + "A" * 32
    logger.warning(
        "webhook.endpoint.disabled",
        extra=logs.fields(endpoint_id="we_1", reason="failing for 5 days", note=secret),
    )
    logger.info("plain %s message", "old-style")
    event, plain = out.getvalue().splitlines()
    assert event.startswith('WARNING: webhook.endpoint.disabled endpoint_id=we_1 reason="failing')
    assert secret not in event and "whsec_" in event
    assert plain == "INFO: tests.log_events: plain old-style message"


def test_fields_leave_out_none_values() -> None:
    assert logs.fields(status_code=None, error="timeout") == {
        logs.FIELDS_ATTR: {"error": "timeout"}
    }
