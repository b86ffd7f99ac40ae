"""editqueue: asynchronous image edits across SeedEdit/Seedream vendors.

`from editqueue import Client, AsyncClient` gives the SDK (editqueue/client/); it is
imported on first use so the worker and the API, which never need it, stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from editqueue.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from editqueue import client

        return getattr(client, name)
    raise AttributeError(f"module 'editqueue' has no attribute {name!r}")
