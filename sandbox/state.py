"""The sandbox's in-memory world, shared by every vendor module of one app."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from flask import Flask

from sandbox.config import SandboxConfig
from sandbox.faults import FaultQueue
from sandbox.stats import Stats

if TYPE_CHECKING:
    from sandbox.files import FileStore

EXTENSION_KEY = "sandbox"


@dataclasses.dataclass
class Sandbox:
    """Config plus every piece of state; each piece guards itself with its own lock."""

    config: SandboxConfig
    faults: FaultQueue
    stats: Stats
    files: FileStore
    vendor_names: list[str]
    # Per-vendor state (e.g. KIE's task table), keyed by vendor name.
    vendor_state: dict[str, Any] = dataclasses.field(default_factory=dict)

    def reset(self) -> None:
        """Forget faults, counters and vendor state (files stay until their links expire)."""
        self.faults.clear()
        self.stats.reset()
        for state in self.vendor_state.values():
            state.reset()


def sandbox_of(app: Flask) -> Sandbox:
    """The Sandbox attached to a Flask app by `create_app`."""
    return app.extensions[EXTENSION_KEY]
