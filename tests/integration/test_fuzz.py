"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis).

Every generated request — valid or not — must get an answer that is not a 5xx, carries
the documented content type, and matches the documented schema for its status.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import TenantClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def api_schema(stack):
    """The schema the running API serves."""
    return schemathesis.openapi.from_url(f"{stack.api_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_answers_every_request_within_its_contract(case, stack, tenant: TenantClient) -> None:
    case.call_and_validate(
        base_url=stack.api_url,
        headers={"Authorization": f"Bearer {tenant.key}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        timeout=30,
    )
