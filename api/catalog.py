"""`GET /v1/models`: the catalog."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api.openapi import operation
from api.state import services
from editqueue.catalog import all_models
from editqueue.schemas import ModelList

bp = Blueprint("models", __name__, url_prefix="/v1/models")


@bp.get("")
@operation("The model catalog", tags=["models"], responses={200: ModelList})
def list_models() -> Response:
    """Each model with its providers (those configured here marked), limits and parameters."""
    configured = set(services().settings.configured_providers())
    data = []
    for model in all_models():
        entry = model.to_public()
        entry["available_providers"] = [p for p in model.providers if p in configured]
        data.append(entry)
    return jsonify({"data": data})
