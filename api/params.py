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
    """An RFC 3339 timestamp (UTC assumed when it has no offset), or a 422 naming `field`."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiProblem(
            422,
            f"{field} must be an RFC 3339 timestamp",
            errors=[{"field": field, "message": "not an RFC 3339 timestamp"}],
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
