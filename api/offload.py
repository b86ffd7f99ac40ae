"""Run CPU-heavy request work on threads, so the gevent event loop keeps serving.

Under gunicorn's gevent worker every request of a process shares one thread: a greenlet
that decodes a 36-Mpx image for 0.4 s holds up every other request on the worker, and
gunicorn's heartbeat too, so enough of them get the worker killed. Pillow and hashlib
release the GIL while they work, so on a thread such work runs beside the event loop.

Outside a gevent-patched process (tests, tools) the work simply runs in place.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Below this many bytes of input, work takes a few ms: cheaper in place than queued.
OFFLOAD_BYTES = 1024 * 1024
# Threads per API process: about the cores an API process may use. Each large decode
# holds its pixels (~150 MB for 36 Mpx), so this also bounds the memory decodes take.
THREADS = 2

# Threads per API process for many small writes at once (a batch's inline images): they
# wait on the disk, not the CPU, so more of them than cores let their fsyncs overlap.
WRITE_THREADS = 16

_pool: Any = None
_pool_pid: int | None = None
_write_pool: Any = None
_write_pool_pid: int | None = None


def _gevent_pool() -> Any:
    """The process's decode pool when gevent has patched it, else None."""
    global _pool, _pool_pid
    if "gevent" not in sys.modules:
        return None
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        return None
    # Not gevent's hub pool: it also resolves host names, which must not queue behind decodes.
    if _pool is None or _pool_pid != os.getpid():
        from gevent.threadpool import ThreadPool

        _pool, _pool_pid = ThreadPool(THREADS), os.getpid()
    return _pool


def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the decode pool under gevent (the greenlet waits), else in place."""
    pool = _gevent_pool()
    if pool is None:
        return fn(*args)
    return pool.apply(fn, args)


def run_sized(size: int, fn: Callable[..., T], *args: Any) -> T:
    """``run_blocking`` for work on ``size`` bytes over OFFLOAD_BYTES, else ``fn(*args)``."""
    return run_blocking(fn, *args) if size > OFFLOAD_BYTES else fn(*args)


def run_all(fn: Callable[..., T], calls: list[tuple[Any, ...]]) -> list[T]:
    """``[fn(*args) for args in calls]``, run side by side on threads; raises the first error.

    Under gevent on a pool of real threads of its own; elsewhere on a short-lived one.
    """
    if len(calls) < 2:
        return [fn(*args) for args in calls]
    pool = _gevent_write_pool()
    if pool is None:
        with concurrent.futures.ThreadPoolExecutor(WRITE_THREADS) as executor:
            return list(executor.map(lambda args: fn(*args), calls))
    return list(pool.map(lambda args: fn(*args), calls))


def _gevent_write_pool() -> Any:
    global _write_pool, _write_pool_pid
    if _gevent_pool() is None:
        return None
    if _write_pool is None or _write_pool_pid != os.getpid():
        from gevent.threadpool import ThreadPool

        _write_pool, _write_pool_pid = ThreadPool(WRITE_THREADS), os.getpid()
    return _write_pool
