"""The API server's request handler: gevent's pywsgi one, answering 414 as problem+json.

gevent answers a request line over 8 KiB itself, before the app sees it, with an empty
body. This handler reads longer lines whole (up to REQUEST_LINE_READ_BYTES) and answers
every one gevent refuses with the same problem+json 414 the app sends for a URL over
MAX_URL_BYTES. Must not import the app (see api/gunicorn_worker.py).
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.ggevent import PyWSGIHandler

from api.http_limits import REQUEST_LINE_READ_BYTES, uri_too_long_response

_URI_TOO_LONG = uri_too_long_response()


class ProblemHandler(PyWSGIHandler):
    """gunicorn's pywsgi handler with a problem+json 414."""

    def read_requestline(self) -> str:
        """The request line, read up to REQUEST_LINE_READ_BYTES rather than gevent's 8 KiB."""
        return self.rfile.readline(REQUEST_LINE_READ_BYTES).decode("latin-1")

    def handle_one_request(self) -> Any:
        """gevent's handling, with its empty 414 replaced by problem+json."""
        result = super().handle_one_request()
        if isinstance(result, tuple) and result[0] == "414":
            return "414", _URI_TOO_LONG
        return result
