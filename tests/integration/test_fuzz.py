"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis).

Every generated request — valid or not — must get an answer that is not a 5xx, carries
the documented content type, and matches the documented schema for its status. Strings
draw from every code point (NUL and lone surrogates included), and some JSON bodies get
a NaN or ±Infinity in place of one of their values.

Driven through schemathesis's Python API inside one ordinary test rather than its pytest
plugin, so it does not depend on pytest internals the plugin reads.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from tests.conftest import TenantClient

pytestmark = pytest.mark.slow

EXAMPLES_PER_MODE = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
NON_FINITE = [math.nan, math.inf, -math.inf]


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every scalar (and empty container) in a JSON document."""
    if isinstance(node, dict) and node:
        return [leaf for key, value in node.items() for leaf in _leaves(value, (*path, key))]
    if isinstance(node, list) and node:
        return [leaf for i, value in enumerate(node) for leaf in _leaves(value, (*path, i))]
    return [path]


def _replaced(node: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[head] = _replaced(node[head], rest, value)
    return copy


def poison(case: Any, data: st.DataObject) -> None:
    """Put a NaN or ±Infinity in place of one value of the case's JSON body, sent as is."""
    if case.media_type != "application/json" or not isinstance(case.body, (dict, list)):
        return
    leaves = _leaves(case.body)
    path = leaves[data.draw(st.integers(0, len(leaves) - 1), label="poisoned leaf")]
    value = data.draw(st.sampled_from(NON_FINITE), label="non-finite")
    # Bytes go out unchanged; the requests library would refuse to encode a NaN itself.
    case.body = json.dumps(_replaced(case.body, path, value)).encode()


def _fuzz(operation: Any, mode: GenerationMode, base_url: str, key: str) -> None:
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        if data.draw(st.booleans(), label="poison"):
            poison(case, data)
        case.call_and_validate(
            base_url=base_url,
            headers={"Authorization": f"Bearer {key}"},
            checks=CHECKS,
            timeout=30,
        )

    run()


def test_api_answers_every_request_within_its_contract(stack, tenant: TenantClient) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.api_url}/openapi.json")
    generation = schema.config.generation
    generation.allow_x00 = True
    generation.codec = None  # every code point, lone surrogates included
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 10
    for operation in operations:
        raw = operation.definition.raw
        # /healthz and the like take no input at all: there is nothing to make invalid.
        negatable = raw.get("parameters") or raw.get("requestBody") or raw.get("security")
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negatable else [])
        for mode in modes:
            try:
                _fuzz(operation, mode, stack.api_url, tenant.key)
            except Exception as exc:  # each operation's failure is reported, not just the first
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
