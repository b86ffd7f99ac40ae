"""`/openapi.json` generated from the routes and the pydantic schemas they declare."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from editqueue import schemas

F = TypeVar("F", bound=Callable[..., Any])

REF = "#/components/schemas/{model}"


@dataclass
class Operation:
    """What a view declares about itself for the OpenAPI document."""

    summary: str
    tags: list[str]
    body: type[BaseModel] | None = None
    body_content_types: tuple[str, ...] = ("application/json",)
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    query: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, Any]] = field(default_factory=list)
    auth: bool = True
    raw_body: dict[str, Any] | None = None
    extra_content: dict[int, dict[str, Any]] = field(default_factory=dict)


def operation(summary: str, *, tags: list[str], **kwargs: Any) -> Callable[[F], F]:
    """Attach OpenAPI metadata to a view function."""

    def decorate(view: F) -> F:
        view._openapi = Operation(summary=summary, tags=tags, **kwargs)  # type: ignore[attr-defined]
        return view

    return decorate


def query_param(
    name: str, schema: dict[str, Any], description: str = "", *, style: str | None = None
) -> dict[str, Any]:
    """An OpenAPI query parameter object."""
    param = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    if style:
        param["style"] = style
        param["explode"] = True
    return param


def header_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An OpenAPI header parameter object."""
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": schema,
        "description": description,
    }


_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-zA-Z_]+)>")

_STATUS_TEXT = {
    200: "OK",
    202: "Accepted",
    204: "No content",
    302: "Redirect",
    400: "Malformed request",
    401: "Missing or invalid API key",
    404: "Not found",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid request",
    503: "Service unavailable",
}


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": _STATUS_TEXT.get(status, "Error"),
        "content": {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}},
    }


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every documented route of the app."""
    models: set[type[BaseModel]] = {schemas.Problem}
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        op: Operation | None = getattr(view, "_openapi", None)
        if op is None:
            continue
        path = _CONVERTER.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(op, rule.rule, method, models)
    _, defs = models_json_schema(
        [(m, "serialization") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=REF,
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "editqueue",
            "version": "1",
            "description": "Asynchronous image edits across SeedEdit/Seedream vendors, with "
            "durable results and signed webhooks.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(
    op: Operation, rule: str, method: str, models: set[type[BaseModel]]
) -> dict[str, Any]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _CONVERTER.findall(rule)
    ]
    out: dict[str, Any] = {
        "summary": op.summary,
        "tags": op.tags,
        "operationId": f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', rule.lower()).strip('_')}",
        "parameters": params + op.query + op.headers,
        "responses": {},
    }
    if op.auth:
        out["security"] = [{"bearer": []}]
        out["responses"]["401"] = _problem_response(401)
    if op.body is not None:
        models.add(op.body)
        content = {
            ct: {"schema": {"$ref": REF.format(model=op.body.__name__)}}
            for ct in op.body_content_types
        }
        out["requestBody"] = {"required": True, "content": content}
    elif op.raw_body is not None:
        out["requestBody"] = op.raw_body
    for status, model in op.responses.items():
        if status >= 400:
            out["responses"][str(status)] = _problem_response(status)
            continue
        response: dict[str, Any] = {"description": _STATUS_TEXT.get(status, "OK")}
        if model is not None:
            models.add(model)
            response["content"] = {
                "application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}
            }
        if status in op.extra_content:
            response.setdefault("content", {}).update(op.extra_content[status])
        out["responses"][str(status)] = response
    return out
