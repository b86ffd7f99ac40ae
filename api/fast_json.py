"""JSON responses encoded by orjson: `jsonify`'s standard encoder was 3 % of a
`POST /v1/jobs`, and orjson takes a tenth of its time."""

from __future__ import annotations

from typing import Any, cast

import orjson
from flask import Response as FlaskResponse
from flask.json.provider import DefaultJSONProvider
from werkzeug.sansio.response import Response

# Dates go through Flask's own `default` (HTTP dates), as they did before.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_APPEND_NEWLINE


class FastJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, with keys in insertion order and responses made by orjson."""

    sort_keys = False

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """As Flask's `jsonify`: compact JSON and a newline; indented in debug mode."""
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(*args, **kwargs)
        value = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(value, default=self.default, option=_OPTIONS)
        except TypeError:
            # What orjson refuses and the standard encoder takes (a lone surrogate, an int
            # past 64 bits, a key that is not a string) keeps its old encoding.
            return super().response(*args, **kwargs)
        response_class = cast(type[FlaskResponse], self._app.response_class)
        return response_class(body, mimetype=self.mimetype)
