"""Structured JSON logs carrying the job, tenant and provider being worked on."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context")

# Anything shaped like one of our secrets is masked even if a message includes it by mistake.
_SECRETS = re.compile(r"(eq_[A-Za-z0-9_\-]{20,}|whsec_[A-Za-z0-9+/=]{20,}|Bearer\s+\S+)")


def redact(text: str) -> str:
    """Mask API keys, webhook secrets and bearer tokens in a string."""
    return _SECRETS.sub(lambda m: m.group(0)[:6] + "…[redacted]", text)


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Attach fields (job_id, tenant, provider…) to every log record inside the block."""
    current = dict(_context.get({}))
    current.update({k: v for k, v in fields.items() if v is not None})
    token = _context.set(current)
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: str | None) -> None:
    """Add fields to the current context (until the enclosing `bound` block ends)."""
    current = dict(_context.get({}))
    current.update({k: v for k, v in fields.items() if v is not None})
    _context.set(current)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        entry.update(_context.get({}))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "INFO", *, json_logs: bool = True) -> None:
    """Send the root logger's records to stderr, as JSON unless asked otherwise."""
    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; webhook URLs may carry their owners' tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
