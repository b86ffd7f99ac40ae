"""Query parameters of list endpoints, declared once for the handlers' OpenAPI metadata."""

from api.openapi import query_param

LIST_JOBS_QUERY = [
    query_param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
        "page size, 1–200",
    ),
    query_param("cursor", {"type": "string"}, "next_cursor of the previous page"),
    query_param(
        "status", {"type": "string"}, "comma list of: queued, running, succeeded, failed, canceled"
    ),
    query_param("model", {"type": "string"}, "catalog model id or alias"),
    query_param("provider", {"type": "string"}, "vendor that served the job"),
    query_param("batch_id", {"type": "string"}, "only the jobs of this batch"),
    query_param(
        "created_after",
        {"type": "string", "format": "date-time"},
        "only jobs created at or after this time (inclusive)",
    ),
    query_param(
        "created_before",
        {"type": "string", "format": "date-time"},
        "only jobs created before this time (exclusive), so consecutive windows never overlap",
    ),
    query_param(
        "metadata",
        {"type": "object", "additionalProperties": {"type": "string"}},
        "metadata[KEY]=VALUE, repeatable, all must match",
        style="deepObject",
    ),
]
