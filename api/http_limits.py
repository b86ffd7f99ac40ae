"""Request-size limits shared by the API and its HTTP server, and the 414 they answer.

Standard library only: the gunicorn worker imports this in the master, before patching.
"""

from __future__ import annotations

import json

# The longest request target (path and query, as sent) the API accepts; longer is a 414.
MAX_URL_BYTES = 8000
# How much of a request line the server reads before answering 414. gevent's own limit
# (8 KiB) leaves the rest of a longer line unread, and closing a socket with unread data
# resets the connection, so a client still sending may never see the answer. Up to this
# size the whole line is read and the client reliably gets the problem+json 414.
REQUEST_LINE_READ_BYTES = 64 * 1024

PROBLEM_TYPE = "https://editqueue.dev/problems/"


def uri_too_long_detail() -> str:
    """The 414's detail, the same from the server and from the app."""
    return f"the URL is longer than {MAX_URL_BYTES} bytes"


def uri_too_long_response() -> bytes:
    """A complete HTTP/1.1 414 problem+json response, for the server to send as it is."""
    body = json.dumps(
        {
            "type": PROBLEM_TYPE + "uri_too_long",
            "title": "URI too long",
            "status": 414,
            "detail": uri_too_long_detail(),
            "code": "uri_too_long",
            "errors": [],
        }
    ).encode()
    head = (
        "HTTP/1.1 414 URI Too Long\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
