"""The sandbox Flask app: one blueprint per vendor, mounted under the vendor's name.

A vendor's base URL is therefore `http://HOST:PORT/<vendor>`. Adding a vendor means a
new module with a `blueprint`, listed in VENDORS (and in VENDOR_STATE if it keeps state
between requests; that state needs a `reset()`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from flask import Flask
from werkzeug.serving import make_server

from sandbox import acedata, ark, cometapi, control, files, kie, vtrix
from sandbox.config import SandboxConfig
from sandbox.faults import FaultQueue
from sandbox.kie_tasks import KieTasks
from sandbox.state import EXTENSION_KEY, Sandbox
from sandbox.stats import Stats
from sandbox.timed_tasks import TaskTable

# Vendor name (= URL prefix) → emulator module.
VENDORS: dict[str, ModuleType] = {
    "ark": ark,
    "kie": kie,
    "cometapi": cometapi,
    "acedata": acedata,
    "vtrix": vtrix,
}
# Vendors that keep state between requests, and how to make it.
VENDOR_STATE: dict[str, Callable[[], Any]] = {
    "kie": KieTasks,
    "acedata": TaskTable,
    "vtrix": TaskTable,
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build a sandbox app; `config` overrides the `SANDBOX_*` environment."""
    settings = SandboxConfig.load(config)
    app = Flask(__name__, static_folder=None)
    app.json.sort_keys = False  # keep vendor field order as documented
    app.extensions[EXTENSION_KEY] = Sandbox(
        config=settings,
        faults=FaultQueue(),
        stats=Stats(list(VENDORS)),
        files=files.FileStore(),
        vendor_names=list(VENDORS),
        vendor_state={name: make() for name, make in VENDOR_STATE.items()},
    )
    for name, module in VENDORS.items():
        app.register_blueprint(module.blueprint, url_prefix=f"/{name}")
    app.register_blueprint(files.blueprint)
    app.register_blueprint(control.blueprint)
    return app


def serve(host: str, port: int, config: Mapping[str, Any] | None = None) -> None:
    """Run the sandbox on a threaded werkzeug server until interrupted (loopback use)."""
    server = make_server(host, port, create_app(config), threaded=True)
    # A banner on stdout: the CLI and scripts read the address from it.
    print(
        f"sandbox listening on http://{host}:{server.port} (vendors: {', '.join(VENDORS)})",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
