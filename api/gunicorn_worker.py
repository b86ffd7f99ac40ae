"""The API's gunicorn worker class: gevent's own WSGI server, patched without deleting epoll.

gevent's pywsgi server is used rather than gunicorn's greenlet-per-connection parser: on
this code base it served about twice the requests per second at 16 concurrent clients
(measured ~200 vs ~50–110 req/s for `GET /v1/jobs/{id}` on 2 shared cores; gthread 2×8
workers: ~150–220 req/s, but 50 open event streams there blocked every other request).

gunicorn's stock gevent worker patches "aggressively", which deletes `select.epoll`; trio
(imported by httpcore whenever it is installed) builds a class around `select.epoll` at
import and then fails, so the app cannot load. Patching non-aggressively keeps that unused,
blocking `epoll` while sockets, `time.sleep`, `select.select`/`poll` and
`selectors.DefaultSelector` become cooperative — what psycopg 3 (it then picks its
poll-based wait) and redis-py need.

This module must not import the app: gunicorn imports it in the master, before patching.
"""

from __future__ import annotations

import socket
from typing import cast

from gevent import monkey
from gunicorn.sock import BaseSocket
from gunicorn.workers.ggevent import GeventPyWSGIWorker

from api.gunicorn_handler import ProblemHandler


class GeventWorker(GeventPyWSGIWorker):
    """gunicorn's gevent pywsgi worker with a non-aggressive monkey patch."""

    wsgi_handler = ProblemHandler  # a problem+json 414 for request lines gevent refuses

    def patch(self) -> None:
        """Patch the standard library, then rewrap the listening sockets as gevent sockets."""
        monkey.patch_all(aggressive=False)
        # Until now these are gunicorn's listeners; the stubs type the attribute as what
        # this method turns them into.
        listeners = cast("list[BaseSocket]", self.sockets)
        self.sockets = [
            socket.socket(s.FAMILY, socket.SOCK_STREAM, fileno=s.sock.detach()) for s in listeners
        ]
