"""Property-based: every operation of the HTTP API, against its own OpenAPI document.

Schemathesis generates requests from ``/openapi.json`` (valid ones and ones that break the
schema) and sends them to a real ``dispatcher serve`` on the real broker. Any 5xx, or an
answer the document does not describe, fails the test. The number of examples is bounded so
the suite stays fast; the failing example is printed for a reproduction.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from common import AmqpSettings
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, api_url, wait_for_consumers

TOKEN = "fuzz-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Per operation and mode (about 20 operations); WQ_TEST_FUZZ_EXAMPLES raises it for a long run.
EXAMPLES = int(os.environ.get("WQ_TEST_FUZZ_EXAMPLES", "25"))
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def served(
    processes: Processes, amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> str:
    processes.dispatcher(
        "dispatcher",
        tmp_path / "tasks.sqlite3",
        WQ_DISPATCHER_HTTP_TOKEN=TOKEN,
        WQ_DISPATCHER_TASKS="tests.integration.tasks",
    )
    url = api_url(processes, "dispatcher")
    wait_for_consumers(broker, amqp_settings.topology.results_queue, 1)
    return url


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_gets_a_5xx_or_an_undocumented_answer(served: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json", headers=AUTH, timeout=10)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 15  # the document lists every operation

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            response = case.call(headers=AUTH, timeout=30)
            assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            # Nothing to break: an operation without parameters or body has no invalid input.
            assert mode is GenerationMode.NEGATIVE, operation.label
