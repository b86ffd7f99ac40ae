"""Query parameters of list endpoints, declared once for the handlers' OpenAPI metadata."""

from api.openapi import query_param

LIST_JOBS_QUERY = [
    query_param("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}),
    query_param("cursor", {"type": "string"}, "next_cursor of the previous page"),
    query_param("status", {"type": "string"}, "comma list of statuses"),
    query_param("model", {"type": "string"}),
    query_param("provider", {"type": "string"}),
    query_param("batch_id", {"type": "string"}),
    query_param("created_after", {"type": "string", "format": "date-time"}),
    query_param("created_before", {"type": "string", "format": "date-time"}),
    query_param(
        "metadata",
        {"type": "object", "additionalProperties": {"type": "string"}},
        "metadata[KEY]=VALUE, repeatable, all must match",
        style="deepObject",
    ),
]
