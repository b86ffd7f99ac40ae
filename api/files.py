"""`/v1/files/<key>`: signed, time-limited links to results in local-directory storage."""

from __future__ import annotations

from flask import Blueprint, Response, request, send_file

from api.errors import ApiProblem
from api.state import services
from editqueue.infra.storage import LocalStorage, StorageError

bp = Blueprint("files", __name__, url_prefix="/v1/files")


@bp.get("/<path:key>")
def download(key: str) -> Response:
    """Serve a stored object when the link's signature and expiry check out (404 otherwise)."""
    storage = services().storage
    if not isinstance(storage, LocalStorage):
        raise ApiProblem(404, "no such file")
    expires = request.args.get("expires", "")
    signature = request.args.get("signature", "")
    if not storage.verify_link(key, expires, signature):
        raise ApiProblem(403, "the link is invalid or has expired", code="link_expired")
    try:
        path = storage.path_for(key)
    except StorageError:
        raise ApiProblem(404, "no such file") from None
    if not path.is_file():
        raise ApiProblem(404, "no such file")
    response = send_file(path, conditional=True, max_age=0)
    response.headers["Cache-Control"] = "private, max-age=0"
    return response
