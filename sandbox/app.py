"""The sandbox Flask app: one blueprint per vendor, mounted under the vendor's name.

A vendor's base URL is therefore `http://HOST:PORT/<vendor>`. Adding a vendor means a
new module with a `blueprint`, listed in VENDORS (and in VENDOR_STATE if it keeps state
between requests; that state needs a `reset()`).
"""

from __future__ import annotations

import logging
import re
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

LOG_FORMAT = "%(asctime)s %(name)s %(message)s"
# Request lines and callback errors name URLs whose secrets must not reach a log: the
# token at the end of a callback URL, and the query of a signed link (a vendor's result
# link served here, or the service's own input link the emulators fetch).
_CALLBACK_TOKEN = re.compile(r"(/callbacks/[^/\s?#\"']+/)[^/\s?#\"']+")
_SIGNED_QUERY = re.compile(
    r"\?(?:[^\s?#\"']*&)?(?:sig|signature|x-amz-signature)=[^\s#\"']*", re.IGNORECASE
)


class RedactingFilter(logging.Filter):
    """Masks callback tokens and link signatures in every record a handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place; never drops it."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        message = _CALLBACK_TOKEN.sub(lambda m: m.group(1) + "<redacted>", message)
        record.msg = _SIGNED_QUERY.sub("?<redacted>", message)
        record.args = None
        return True


def configure_logging() -> None:
    """INFO logs on stderr (unless set up already), every handler of the root redacting.

    werkzeug's request log propagates to the root, so this covers the access log too.
    """
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_REDACTING)


_REDACTING = RedactingFilter()


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
    configure_logging()
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
