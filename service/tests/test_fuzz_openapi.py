"""Property test: schemathesis drives the live server from its own OpenAPI document.

No generated input may produce a 5xx, and every response must match the document
(status code, content type and body schema), so the OpenAPI description stays true to
the service. (schemathesis' pytest plugin does not load under pytest 9 yet, so the
operations are driven through hypothesis directly.)
"""

from __future__ import annotations

import httpx
import schemathesis
from helpers import Server, auth
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_every_operation_has_no_server_errors_and_matches_the_document(server: Server):
    api = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 12

    served_before = _requests_served(server)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case) -> None:
            case.call_and_validate(headers=auth(), checks=CHECKS)

        try:
            exercise()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc
    # The generated cases really reached the server (not all rejected client-side).
    assert _requests_served(server) - served_before >= 10 * len(operations)


def _requests_served(server: Server) -> float:
    total = 0.0
    for line in httpx.get(server.metrics_url).text.splitlines():
        if line.startswith("schema_registry_http_requests_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
