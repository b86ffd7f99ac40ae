"""Structured JSON logs carrying the job, tenant and provider being worked on.

Our own records say a stable dotted event key as their message and carry their values as
fields, so a log search matches the key whatever the values:

    log.warning("job.submit.vendor_failed", extra=logs.fields(provider=name, code=exc.code))

docs/operations.md ("Log events") lists the keys.
"""

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
# A callback URL's last segment is its job's token: whoever holds it may post callbacks.
_CALLBACK_TOKEN = re.compile(r"(/v1/callbacks/[^/\s?#\"']+/)[^/\s?#\"']+")
# Signed links (ours, the sandbox's, S3's) open their object to anyone until they expire.
_SIGNED_QUERY = re.compile(
    r"\?(?:[^\s?#\"']*&)?(?:sig|signature|x-amz-signature)=[^\s#\"']*", re.IGNORECASE
)
REDACTED = "<redacted>"
# Where `fields` puts an event's values on the record: one attribute of our own, so a field
# can never clash with (or overwrite) a LogRecord attribute such as `name` or `args`.
FIELDS_ATTR = "event_fields"
# A stable event key: lower-case dotted words, e.g. `job.submit.vendor_failed`.
EVENT_KEY = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")


def redact(text: str) -> str:
    """Mask API keys, webhook secrets, bearer tokens, callback tokens and link signatures."""
    text = _SECRETS.sub(lambda m: m.group(0)[:6] + "…[redacted]", text)
    text = _CALLBACK_TOKEN.sub(lambda m: m.group(1) + REDACTED, text)
    return _SIGNED_QUERY.sub("?" + REDACTED, text)


def fields(**values: object) -> dict[str, dict[str, object]]:
    """The `extra=` of an event record: its structured values (None values are left out)."""
    return {FIELDS_ATTR: {k: v for k, v in values.items() if v is not None}}


def event_fields(record: logging.LogRecord) -> dict[str, object]:
    """The structured values `fields` attached to the record (empty for other records)."""
    found = getattr(record, FIELDS_ATTR, None)
    return found if isinstance(found, dict) else {}


def _redact_value(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """Masks secrets in each record's message and traceback, whatever the formatter.

    On our root handler it covers every record that propagates there (Celery's, Flask's,
    ours); gunicorn's loggers, which do not propagate, get it on the logger itself.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a broken format string: logging's own error report shows it
        record.msg = redact(message)
        record.args = None
        if values := event_fields(record):
            setattr(record, FIELDS_ATTR, {k: _redact_value(v) for k, v in values.items()})
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


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
    """One JSON object per line: time, level, logger, message, context, fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        core = set(entry)
        entry.update(_context.get({}))
        # An event's own value (say its provider) is more precise than the bound context's.
        entry.update(
            {k: _redact_value(v) for k, v in event_fields(record).items() if k not in core}
        )
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`LEVEL: logger: message` lines; events read `LEVEL: event.key name=value …`.

    The level leads, so standalone's quiet terminal can pick out warnings and errors; an
    event's key already says where it comes from, so its logger's name is left out.
    """

    def __init__(self) -> None:
        super().__init__("%(levelname)s: %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line without its traceback (which `format` appends)."""
        if not EVENT_KEY.fullmatch(record.message):
            return super().formatMessage(record)
        pairs = (f"{k}={_text_value(v)}" for k, v in event_fields(record).items())
        return " ".join((f"{record.levelname}: {redact(record.message)}", *pairs))


def _text_value(value: object) -> str:
    text = redact(str(value))
    # Quoted when it would otherwise run into the next pair or look like nothing.
    if not text or any(c.isspace() or c in "=\"'" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


_REDACTING = RedactingFilter()
GUNICORN_LOGGERS = ("gunicorn.access", "gunicorn.error")


def configure(level: str = "INFO", *, json_logs: bool = True) -> None:
    """Send the root logger's records to stderr, as JSON unless asked otherwise."""
    handler = logging.StreamHandler()
    handler.addFilter(_REDACTING)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; webhook URLs may carry their owners' tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # gunicorn's loggers do not propagate to ours, and its access lines hold request paths
    # (callback tokens, signed links). On the loggers, the filter outlives gunicorn's
    # handler set-up; addFilter ignores a filter it already has.
    for name in GUNICORN_LOGGERS:
        logging.getLogger(name).addFilter(_REDACTING)
