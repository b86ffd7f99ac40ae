"""Clock-driven tasks for the task vendors (KIE, Vtrix, AceData): a table, timers, rendering.

A task's state is computed from its age at read time, so no background thread has to
advance it; only callbacks need timers. Results are rendered on first read after the task
ends, so their links expire SANDBOX_URL_TTL seconds after completion.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sandbox.faults import Fault
from sandbox.inputs import LoadedImage
from sandbox.state import Sandbox
from sandbox.vendor import render_spec, wants_early_callback

# Tasks are forgotten a day after creation so a long-running sandbox does not grow forever.
TASK_RETENTION = 86_400.0
MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


@dataclasses.dataclass(frozen=True)
class RenderedOutput:
    """One result: its signed link and its bytes (for vendors that can answer inline)."""

    url: str
    data: bytes


@dataclasses.dataclass
class TimedTask:
    """One task, from its validated request to its rendered results."""

    task_id: str
    prompt: str
    seed: int
    images: list[LoadedImage]
    size: tuple[int, int]
    outputs: int
    watermark: bool
    base_url: str
    created_at: float
    latency: float
    # (vendor error code, message) when the task is planned to fail.
    fail: tuple[str, str] | None = None
    # The fault that shaped this task (error spelling, callback trouble), if any.
    fault: Fault | None = None
    callback_url: str | None = None
    # What the vendor echoes back about the request (AceData's `request`, Vtrix's model,
    # KIE's `param`).
    request: dict[str, Any] = dataclasses.field(default_factory=dict)
    rendered: list[RenderedOutput] | None = None
    render_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def finished_at(self) -> float:
        """When the task ends (success or failure)."""
        return self.created_at + self.latency

    def is_done(self, now: float) -> bool:
        """Whether the task has ended by `now`."""
        return now >= self.finished_at

    @property
    def callback_fault(self) -> Fault | None:
        """The task's fault when it is one of the callback kinds, else None."""
        if self.fault is not None and self.fault.kind.startswith("callback_"):
            return self.fault
        return None

    def progress(self, now: float) -> float:
        """Share of the work done at `now`, 0.0–1.0."""
        if self.latency <= 0:
            return 1.0
        return round(min(1.0, max(0.0, (now - self.created_at) / self.latency)), 2)


TaskT = TypeVar("TaskT", bound=TimedTask)


class TaskTable(Generic[TaskT]):
    """A vendor's tasks and the callback timers still pending."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskT] = {}
        self._timers: list[threading.Timer] = []

    def add(self, task: TaskT) -> None:
        """Remember a new task (and forget those past TASK_RETENTION)."""
        horizon = task.created_at - TASK_RETENTION
        with self._lock:
            self._tasks = {k: t for k, t in self._tasks.items() if t.created_at >= horizon}
            self._tasks[task.task_id] = task

    def get(self, task_id: str) -> TaskT | None:
        """A task by id, or None."""
        with self._lock:
            return self._tasks.get(task_id)

    def finish_times(self) -> list[tuple[str, float]]:
        """Every remembered task's id and the Unix time it ends (created + latency)."""
        with self._lock:
            return [(t.task_id, t.created_at + t.latency) for t in self._tasks.values()]

    def schedule(self, delay: float, action: Callable[..., None], *args: Any) -> None:
        """Run `action(*args)` after `delay` seconds on a daemon timer."""
        timer = threading.Timer(delay, action, args)
        timer.daemon = True
        with self._lock:
            self._timers = [t for t in self._timers if t.is_alive()]
            self._timers.append(timer)
        timer.start()

    def schedule_callback(self, task: TaskT, send: Callable[[], None]) -> None:
        """Send the task's callback when the task ends, or at once for `callback_early`."""
        if wants_early_callback(task.fault):
            # Deliberately before the create answer: receivers must cope with it.
            send()
        else:
            self.schedule(task.latency, send)

    def reset(self) -> None:
        """Forget every task and cancel timers not yet fired."""
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self._tasks.clear()


def render_ahead(
    table: TaskTable[Any],
    sandbox: Sandbox,
    vendor: str,
    task: TimedTask,
    image_format: str = "JPEG",
) -> None:
    """Start rendering at once, as a real vendor works during the task's latency: the result
    is ready when the task ends, so a callback or poll at that moment does not wait on Pillow
    (which would count against the service's own overhead in bench.latency)."""
    table.schedule(0.0, ensure_rendered, sandbox, vendor, task, image_format)


def ensure_rendered(
    sandbox: Sandbox, vendor: str, task: TimedTask, image_format: str = "JPEG"
) -> list[RenderedOutput]:
    """Render the task's outputs on first use; later reads see the same links."""
    with task.render_lock:
        if task.rendered is None:
            edits = render_spec(task, image_format)
            mime = MIME_TYPES[image_format]
            ttl = sandbox.config.url_ttl
            task.rendered = [
                RenderedOutput(sandbox.files.put(vendor, data, mime, ttl, task.base_url), data)
                for data in edits
            ]
            task.images = []  # rendered once; the input bytes are not needed any more
        return task.rendered
