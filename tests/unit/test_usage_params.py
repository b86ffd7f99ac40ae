"""The usage report's window and grouping rules, and its public shape (no database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from editqueue import schemas
from editqueue.spend import report
from editqueue.spend.report import InvalidUsageQuery, UsageReport, UsageRow, resolve_window

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 2, 15, 30, tzinfo=UTC)


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts).replace(tzinfo=UTC)  # type: ignore[arg-type]


def test_no_bounds_is_the_current_utc_month() -> None:
    assert resolve_window(None, None, now=NOW) == (at(2026, 12, 1), at(2027, 1, 1))
    # An offset "now" is converted: 23:30 at -05:00 on Nov 30 is already December in UTC.
    late = dt.datetime(2026, 11, 30, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert resolve_window(None, None, now=late) == (at(2026, 12, 1), at(2027, 1, 1))


def test_only_from_runs_to_the_start_of_the_next_month() -> None:
    assert resolve_window(at(2026, 2, 14, 6), None, now=NOW) == (
        at(2026, 2, 14, 6),
        at(2026, 3, 1),
    )


def test_only_to_starts_at_the_month_holding_the_instant_before_it() -> None:
    assert resolve_window(None, at(2026, 3, 1), now=NOW) == (at(2026, 2, 1), at(2026, 3, 1))
    assert resolve_window(None, at(2026, 3, 1, 0, 0, 1), now=NOW) == (
        at(2026, 3, 1),
        at(2026, 3, 1, 0, 0, 1),
    )


def test_both_bounds_are_kept_as_given() -> None:
    start, end = at(2026, 1, 1), at(2027, 1, 2)  # exactly 366 days
    assert resolve_window(start, end, now=NOW) == (start, end)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (at(2026, 5, 1), at(2026, 5, 1), "from must be before to"),
        (at(2026, 5, 2), at(2026, 5, 1), "from must be before to"),
        (at(2026, 1, 1), at(2027, 1, 2, 0, 0, 1), "at most 366 days"),
    ],
)
def test_empty_reversed_or_too_long_windows_are_refused(
    start: dt.datetime, end: dt.datetime, message: str
) -> None:
    with pytest.raises(InvalidUsageQuery) as caught:
        resolve_window(start, end, now=NOW)
    assert message in caught.value.detail
    assert caught.value.status == 400
    assert caught.value.errors[0]["field"] == "to"


def test_a_to_at_the_first_instant_of_year_1_is_an_empty_window() -> None:
    with pytest.raises(InvalidUsageQuery):
        resolve_window(None, at(1, 1, 1), now=NOW)


def test_december_rolls_into_next_year_and_year_9999_is_capped() -> None:
    assert report.next_month(at(2026, 12, 1)) == at(2027, 1, 1)
    start, end = resolve_window(at(9999, 12, 5), None, now=NOW)
    assert start == at(9999, 12, 5) and end.year == 9999 and end > start


@pytest.mark.parametrize("group", ["day", "model", "provider"])
def test_known_groups_pass(group: str) -> None:
    assert report.check_group(group) == group


@pytest.mark.parametrize("group", ["", "Day", "tenant", "day;drop"])
def test_unknown_groups_are_refused_naming_the_field(group: str) -> None:
    with pytest.raises(InvalidUsageQuery) as caught:
        report.check_group(group)
    assert caught.value.errors == [{"field": "group_by", "message": "one of day, model, provider"}]


def test_rows_add_up_field_by_field_keeping_the_left_key() -> None:
    a = UsageRow("ark", jobs=2, images=3, succeeded=1, failed=1, cost=Decimal("0.03"))
    b = UsageRow("kie", jobs=1, images=1, canceled=1, unpriced=1, cost=Decimal("0.5"))
    assert a + b == UsageRow(
        "ark", jobs=3, images=4, succeeded=1, failed=1, canceled=1, unpriced=1, cost=Decimal("0.53")
    )


def test_public_shape_matches_the_openapi_schema_with_six_place_amounts() -> None:
    rows = [UsageRow("2026-12-01", jobs=1, images=2, succeeded=1, cost=Decimal("0.1"))]
    total = UsageRow(None, jobs=1, images=2, succeeded=1, cost=Decimal("0.1"))
    public = report.report_to_public(
        UsageReport(at(2026, 12, 1), at(2027, 1, 1), "day", "EUR", rows, total)
    )
    assert public["from"] == "2026-12-01T00:00:00.000Z"
    assert public["to"] == "2027-01-01T00:00:00.000Z"
    assert public["data"][0]["cost"] == {"amount": "0.100000", "currency": "EUR"}
    assert "key" not in public["total"]
    parsed = schemas.Usage.model_validate(public)
    assert parsed.model_dump(mode="json", by_alias=True) == public
