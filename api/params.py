"""Query and body parameters several endpoints share: page sizes and timestamps."""

from __future__ import annotations

import datetime as dt

from flask import request

from api.errors import ApiProblem


def page_limit() -> int:
    """The `limit` query parameter, 1–200 (default 50)."""
    raw = request.args.get("limit", "50")
    # isascii: "²".isdigit() is true, and int() refuses it.
    limit = int(raw) if raw.isascii() and raw.isdigit() else 0
    if not 1 <= limit <= 200:
        raise ApiProblem(
            422,
            "limit must be an integer from 1 to 200",
            errors=[{"field": "limit", "message": "integer 1–200"}],
        )
    return limit


def parse_time(value: str, field: str) -> dt.datetime:
    """An RFC 3339 timestamp in UTC (UTC assumed when it has no offset), or a 422 naming `field`.

    Converted to UTC here, so a time that exists only in its own offset (year 1 at +14:00,
    year 9999 at -14:00) is refused before anything is written, not found after commit.
    """
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _bad_time(field, "not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise _bad_time(field, "out of range (years 1–9999 in UTC)") from None


def _bad_time(field: str, message: str) -> ApiProblem:
    return ApiProblem(
        422,
        f"{field} must be an RFC 3339 timestamp from year 1 to 9999 (UTC)",
        errors=[{"field": field, "message": message}],
    )
