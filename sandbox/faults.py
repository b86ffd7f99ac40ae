"""Fault injection: what can go wrong, and the three ways to ask for it.

A fault comes from (in order of precedence) the `X-Sandbox-Fault` header of a request,
a `_sandbox` field in its JSON body, or the control queue (`POST /_control/faults`),
whose entries are consumed by the next matching requests.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

KINDS = frozenset(
    {
        "latency",
        "rate_limit",
        "server_error",
        "hang",
        "malformed",
        "task_fail",
        "moderation",
        "callback_lost",
        "callback_duplicate",
        "callback_early",
    }
)
OPS = frozenset({"create", "poll", "callback"})
WILDCARD = "*"
FAULT_HEADER = "X-Sandbox-Fault"
BODY_FIELD = "_sandbox"


class FaultSpecError(ValueError):
    """A fault request names an unknown kind or carries unusable parameters."""


@dataclasses.dataclass(frozen=True)
class Fault:
    """One injected fault: its kind and free-form parameters."""

    kind: str
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultSpecError(f"unknown fault kind {self.kind!r}")

    def number(self, name: str, default: float) -> float:
        """A numeric parameter, or `default` when absent."""
        value = self.params.get(name, default)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise FaultSpecError(f"fault parameter {name} must be a number") from None

    def text(self, name: str, default: str) -> str:
        """A string parameter, or `default` when absent."""
        value = self.params.get(name)
        return default if value is None else str(value)


def parse_header(value: str) -> Fault:
    """Parse `kind[;param=value]…` as sent in the `X-Sandbox-Fault` header."""
    kind, *pairs = (part.strip() for part in value.split(";"))
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, param = pair.partition("=")
        if not sep or not name.strip():
            raise FaultSpecError(f"fault parameter {pair!r} is not name=value")
        params[name.strip()] = param.strip()
    return Fault(kind, params)


def parse_body(spec: Any) -> Fault:
    """Parse a `_sandbox` body field: `{"fault": kind, "params": {...}}` or params inline."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("fault"), str):
        raise FaultSpecError('_sandbox must be an object with a "fault" string')
    params = spec.get("params")
    if params is None:
        params = {k: v for k, v in spec.items() if k != "fault"}
    if not isinstance(params, Mapping):
        raise FaultSpecError("_sandbox.params must be an object")
    return Fault(spec["fault"], dict(params))


@dataclasses.dataclass
class _QueuedFault:
    vendor: str
    op: str
    fault: Fault
    remaining: int

    def matches(self, vendor: str, op: str) -> bool:
        return self.vendor in (vendor, WILDCARD) and self.op in (op, WILDCARD)


class FaultQueue:
    """Faults waiting for the next matching requests, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_QueuedFault] = []

    def add(self, vendor: str, op: str, fault: Fault, count: int = 1) -> None:
        """Queue `fault` for the next `count` requests of `vendor`/`op` (either may be `*`)."""
        if op != WILDCARD and op not in OPS:
            raise FaultSpecError(f"unknown op {op!r}")
        if count < 1:
            raise FaultSpecError("count must be at least 1")
        with self._lock:
            self._entries.append(_QueuedFault(vendor, op, fault, count))

    def take(self, vendor: str, op: str) -> Fault | None:
        """Consume one use of the oldest fault matching this request, if any."""
        with self._lock:
            for entry in self._entries:
                if entry.matches(vendor, op):
                    entry.remaining -= 1
                    if entry.remaining == 0:
                        self._entries.remove(entry)
                    return entry.fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        """The queue as JSON-ready dicts."""
        with self._lock:
            return [
                {
                    "vendor": e.vendor,
                    "op": e.op,
                    "kind": e.fault.kind,
                    "params": dict(e.fault.params),
                    "remaining": e.remaining,
                }
                for e in self._entries
            ]

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._entries.clear()
