"""Jinja filters the console's templates share (times, durations, status colours)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import Flask

from editqueue.models import TERMINAL_STATUSES


def when(value: dt.datetime | str | None) -> str:
    """A timestamp as 'YYYY-MM-DD HH:MM:SS' UTC."""
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        value = parsed
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(value: dt.datetime | None) -> str:
    """'3 s ago', '5 min ago', '2 h ago', or the date for anything older than a day."""
    if value is None:
        return "—"
    seconds = (dt.datetime.now(dt.UTC) - value).total_seconds()
    if seconds < 60:
        return f"{max(0, int(seconds))} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return when(value)[:10]


def duration(start: dt.datetime | None, end: dt.datetime | None) -> str:
    """The time between two instants, '1.4 s' or '2 min 3 s' ('—' if either is missing)."""
    if start is None or end is None:
        return "—"
    seconds = (end - start).total_seconds()
    return (
        f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} min {int(seconds % 60)} s"
    )


def millis(value: float | None) -> str:
    """Milliseconds, or '—'."""
    return "—" if value is None else f"{value:,.0f} ms"


def pretty_json(value: Any) -> str:
    """Indented JSON for a <pre> (escaped by the template like any string)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def is_terminal(status: str) -> bool:
    """Whether a job status is final."""
    return status in TERMINAL_STATUSES


def install(app: Flask) -> None:
    """Register the filters and tests on the app's Jinja environment."""
    app.jinja_env.filters.update(
        when=when, ago=ago, duration=duration, millis=millis, pretty_json=pretty_json
    )
    app.jinja_env.tests["terminal"] = is_terminal
