"""A scriptable in-process vendor, behind the same `Provider` interface as the real adapters.

Each `submit` and `poll` takes the next scripted answer: a `TaskStatus` to return, a
`ProviderError` to raise, or a callable giving one of those when the call happens. With
nothing scripted, `submit` answers a synchronous success and `poll` a finished task. Unit
tests drive the job pipeline with it in milliseconds; the answers it gives are the ones
`editqueue.providers.base` allows, nothing more.
"""

from __future__ import annotations

import collections
import functools
import io
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from editqueue.providers.base import (
    CallbackNotice,
    CallbackRejected,
    EditRequest,
    ErrorCode,
    OutputRef,
    ProviderError,
    TaskStatus,
)
from editqueue.providers.http import decided_error

# A scripted answer: returned, raised, or (a callable) called at the time of the call, so
# a test can make something happen "while the vendor works" and then answer.
Answer = TaskStatus | ProviderError | Callable[[], "TaskStatus | ProviderError"]


@functools.cache
def png(width: int = 8, height: int = 8) -> bytes:
    """A small valid PNG (what a vendor would hand back)."""
    from PIL import Image  # imported here: only fakes and image checks need Pillow

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


# -- answers ---------------------------------------------------------------------------------


def succeeded(
    *outputs: OutputRef, task_id: str | None = None, usage: dict[str, Any] | None = None
) -> TaskStatus:
    """A finished edit; one inline PNG unless `outputs` are given."""
    refs = list(outputs) or [OutputRef(data=png(), content_type="image/png")]
    return TaskStatus("succeeded", task_id=task_id, outputs=refs, usage=usage or {})


def task(task_id: str = "task_1") -> TaskStatus:
    """A task the vendor accepted and is working on (the answer of an async submit)."""
    return TaskStatus("running", task_id=task_id)


def running(task_id: str = "task_1", progress: float | None = None) -> TaskStatus:
    """A poll that finds the task still running."""
    return TaskStatus("running", task_id=task_id, progress=progress)


def failed_task(error: ProviderError | None = None, task_id: str = "task_1") -> TaskStatus:
    """A task the vendor reports as failed (with its error, or none given)."""
    return TaskStatus("failed", task_id=task_id, error=error)


def bad_output(task_id: str | None = None) -> TaskStatus:
    """A success whose output is not an image."""
    return TaskStatus(
        "succeeded", task_id=task_id, outputs=[OutputRef(data=b"not an image at all")]
    )


def empty_output(task_id: str | None = None) -> TaskStatus:
    """A success with no output at all."""
    return TaskStatus("succeeded", task_id=task_id, outputs=[])


def error(
    code: ErrorCode,
    message: str = "the fake vendor failed",
    *,
    provider: str = "fake",
    retryable: bool = False,
    retry_after: float | None = None,
    provider_code: str | None = None,
) -> ProviderError:
    """A vendor failure, mapped as the real adapters map theirs (`http.decided_error`)."""
    return decided_error(provider, code, message, None, retryable, provider_code, retry_after)


def rate_limited(retry_after: float | None = 1.0, *, provider: str = "fake") -> ProviderError:
    """A 429 with its Retry-After."""
    return error(
        "rate_limited", "slow down", provider=provider, retryable=True, retry_after=retry_after
    )


def unavailable(*, provider: str = "fake") -> ProviderError:
    """A transient outage (a 503): worth trying again, here or elsewhere."""
    return error("provider_unavailable", "vendor down", provider=provider, retryable=True)


# -- the adapter -----------------------------------------------------------------------------


class FakeProvider:
    """A vendor adapter that answers from a script and records every call."""

    supports_poll = True

    def __init__(
        self,
        name: str = "fake",
        *,
        submit: Iterable[Answer] = (),
        poll: Iterable[Answer] = (),
        supports_callback: bool = False,
    ) -> None:
        self.name = name
        self.supports_callback = supports_callback
        self._submits: collections.deque[Answer] = collections.deque(submit)
        self._polls: collections.deque[Answer] = collections.deque(poll)
        self._lock = threading.Lock()
        self.requests: list[EditRequest] = []
        self.polled: list[str] = []
        self.closed = False

    def script(self, *, submit: Iterable[Answer] = (), poll: Iterable[Answer] = ()) -> None:
        """Queue more answers."""
        with self._lock:
            self._submits.extend(submit)
            self._polls.extend(poll)

    def submit(self, request: EditRequest) -> TaskStatus:
        """The next scripted submit answer (a synchronous success when none is left)."""
        with self._lock:
            self.requests.append(request)
            answer = self._submits.popleft() if self._submits else succeeded()
        return self._give(answer)

    def poll(self, task_id: str) -> TaskStatus:
        """The next scripted poll answer (the task finished when none is left)."""
        with self._lock:
            self.polled.append(task_id)
            answer = self._polls.popleft() if self._polls else succeeded(task_id=task_id)
        return self._give(answer)

    def _give(self, answer: Answer) -> TaskStatus:
        if callable(answer):
            answer = answer()
        if isinstance(answer, ProviderError):
            if answer.provider != self.name:
                answer.provider = self.name
            raise answer
        return answer

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackNotice:
        """`{"task_id": …}` under an `X-Fake-Signature: ok` header."""
        if headers.get("X-Fake-Signature") != "ok":
            raise CallbackRejected("missing or bad signature")
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("task_id"), str):
            raise ValueError("callback without a task_id")
        return CallbackNotice(task_id=data["task_id"])

    def close(self) -> None:
        """Nothing to release; remembered for tests."""
        self.closed = True
