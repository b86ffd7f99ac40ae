"""`editqueue usage`: the tenant's usage report (GET /v1/usage) as a table or JSON."""

from __future__ import annotations

from typing import Any

import click

from editqueue.cli.jobs import _echo_json, _table, api_client, api_options
from editqueue.client import Usage

HEADER = ("KEY", "JOBS", "IMAGES", "SUCCEEDED", "FAILED", "CANCELED", "UNPRICED", "COST")


def _cells(key: str, row: Any) -> list[str]:
    return [
        key,
        str(row.jobs),
        str(row.images),
        str(row.succeeded),
        str(row.failed),
        str(row.canceled),
        str(row.unpriced),
        row.cost.amount,
    ]


def render(report: Usage) -> str:
    """The report as a table: one line per key, then the total."""
    rows = [_cells(r.key if r.key is not None else "-", r) for r in report.data]
    rows.append(_cells("TOTAL", report.total))
    head = f"{report.group_by} usage, {report.from_} … {report.to} ({report.currency})"
    return head + "\n" + _table(rows, HEADER)


@click.command("usage")
@click.option("--from", "date_from", metavar="TIME", help="RFC 3339 time or date, inclusive.")
@click.option("--to", "date_to", metavar="TIME", help="RFC 3339 time or date, exclusive.")
@click.option(
    "--group-by",
    type=click.Choice(["day", "model", "provider"]),
    default="day",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@api_options
def usage_command(
    date_from: str | None,
    date_to: str | None,
    group_by: str,
    as_json: bool,
    api_url: str,
    api_key: str | None,
) -> None:
    """Jobs, images, outcomes and cost per day, model or provider (default: this month)."""
    with api_client(api_url, api_key) as client:
        report = client.usage(date_from=date_from, date_to=date_to, group_by=group_by)
    if as_json:
        _echo_json(report.model_dump(mode="json", by_alias=True))
    else:
        click.echo(render(report))
