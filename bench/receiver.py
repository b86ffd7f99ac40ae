"""A local webhook receiver that notes when each job's terminal webhook arrived."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Answers 204 to every POST and records `job id → first receive time` (Unix seconds).

    It can also serve one input image on GET (`image_url`), for runs longer than the
    sandbox's link lifetime.
    """

    def __init__(self, image: bytes = b"") -> None:
        self.image = image
        self.arrivals: dict[str, float] = {}
        self.types: dict[str, str] = {}
        self.count = 0
        self._lock = threading.Lock()
        self._all_in = threading.Event()
        self._expected = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.image_url = f"http://127.0.0.1:{self.server.server_address[1]}/input.png"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                now = time.time()
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer._record(now, body)
                self.send_response(204)
                self.end_headers()

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.send_header("content-length", str(len(outer.image)))
                self.end_headers()
                self.wfile.write(outer.image)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def _record(self, now: float, body: bytes) -> None:
        try:
            event = json.loads(body)
            job_id = event["data"]["id"]
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self.count += 1
            if job_id not in self.arrivals:
                self.arrivals[job_id] = now
                self.types[job_id] = event.get("type", "")
            if self._expected and len(self.arrivals) >= self._expected:
                self._all_in.set()

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until webhooks for `count` distinct jobs arrived; False on timeout."""
        with self._lock:
            self._expected = count
            if len(self.arrivals) >= count:
                return True
            self._all_in.clear()
        return self._all_in.wait(timeout)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
