"""Cursor paging: every item of a list endpoint, fetching the next page only when needed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel

from editqueue.client._transport import AsyncTransport, Request, SyncTransport
from editqueue.client.resources._shared import with_cursor

M = TypeVar("M", bound=BaseModel)


def _page_request(path: str, params: list[tuple[str, str]], cursor: str | None) -> Request:
    return Request("GET", path, params=with_cursor(params, cursor))


def _items(page: Any, model: type[M]) -> tuple[list[M], str | None]:
    return [model.model_validate(item) for item in page["data"]], page.get("next_cursor")


def paginate(
    transport: SyncTransport, path: str, params: list[tuple[str, str]], model: type[M]
) -> Iterator[M]:
    """Items across pages, newest first."""
    cursor = None
    while True:
        items, cursor = _items(transport.send(_page_request(path, params, cursor)).json(), model)
        yield from items
        if not cursor:
            return


async def apaginate(
    transport: AsyncTransport, path: str, params: list[tuple[str, str]], model: type[M]
) -> AsyncIterator[M]:
    """Items across pages, newest first (async)."""
    cursor = None
    while True:
        response = await transport.send(_page_request(path, params, cursor))
        items, cursor = _items(response.json(), model)
        for item in items:
            yield item
        if not cursor:
            return
