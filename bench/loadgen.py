"""A closed-loop HTTP load generator in separate processes (it must not share the GIL).

Each process runs `threads` keep-alive connections posting the same body in a loop; only
answers completed inside the measuring window (after a warm-up) count. http.client is used
rather than httpx because it costs the 2-core machine several times less CPU per request,
leaving more of it to the server under test.
"""

from __future__ import annotations

import http.client
import multiprocessing
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Load:
    """What to send, how hard and for how long."""

    url: str
    body: bytes
    headers: dict[str, str]
    seconds: float = 5.0
    warmup: float = 1.0
    processes: int = 2
    threads: int = 8


@dataclass(frozen=True)
class LoadResult:
    """Answers by status within the window, and the window's length."""

    statuses: Counter[int]
    seconds: float

    def rate(self, status: int) -> float:
        """Answers of `status` per second."""
        return self.statuses[status] / self.seconds if self.seconds else 0.0


def _connection_loop(load: Load, start: float, stop: float, counts: Counter[int]) -> None:
    parts = urlsplit(load.url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    path = parts.path or "/"
    local: Counter[int] = Counter()
    while time.time() < stop:
        try:
            connection.request("POST", path, body=load.body, headers=load.headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()  # reconnects on the next request
            status = 0
        if start <= time.time() <= stop:
            local[status] += 1
    connection.close()
    counts.update(local)


def _process_main(
    load: Load,
    ready: multiprocessing.Queue,
    go: multiprocessing.Queue,
    results: multiprocessing.Queue,
) -> None:
    ready.put(True)  # imports done: a spawned child re-imports the parent's __main__ first
    start, stop = go.get()
    counts: Counter[int] = Counter()
    threads = [
        threading.Thread(target=_connection_loop, args=(load, start, stop, counts))
        for _ in range(load.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(dict(counts))


def run(load: Load) -> LoadResult:
    """Drive the load from `load.processes` fresh processes and add up what they saw."""
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Queue(), context.Queue(), context.Queue()
    workers = [
        context.Process(target=_process_main, args=(load, ready, go, results))
        for _ in range(load.processes)
    ]
    for worker in workers:
        worker.start()
    # Counting starts at a wall-clock instant shared by every process, fixed only once all
    # have imported (on a loaded machine that can take longer than the window itself), then
    # a warm-up (connections open, caches fill); requests before it are sent but not counted.
    for _ in workers:
        ready.get(timeout=120)
    start = time.time() + 0.5 + load.warmup
    stop = start + load.seconds
    for _ in workers:
        go.put((start, stop))
    total: Counter[int] = Counter()
    for _ in workers:
        total.update(results.get(timeout=load.seconds + load.warmup + 120))
    for worker in workers:
        worker.join()
    return LoadResult(total, load.seconds)
