"""Requests generated from the OpenAPI document (schemathesis): no answer is a 5xx.

Each operation is called with generated paths, queries and bodies, as an admin that also
holds the gate's reviewer role (so that requests get past authorization and reach the
handlers), against a store holding a run parked at a gate and a dead run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from orchestrate.server import ServerSettings, create_app, create_token  # noqa: E402
from tests.integration.test_server_api import BROKEN, REPLY  # noqa: E402


def _app() -> tuple[Any, str]:
    from orchestrate import Client

    async def build() -> tuple[Any, str]:
        client = Client("memory://", workflows=[REPLY, BROKEN])
        await client.engine.open()
        await client.run(REPLY, "fuzz")
        await client.run(BROKEN, "fuzz")
        token, _ = await create_token(client.store, name="fuzzer", roles=["admin", "editor"])
        return create_app(
            client, settings=ServerSettings(stream_seconds=0.05, max_body_bytes=65536, allowed_hosts=["testserver"])
        ), token

    return asyncio.run(build())


APP, TOKEN = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=[not_a_server_error])


SOAK_REQUESTS = 10_000
"""Generated requests the soak run sends, at least (``-m soak``)."""


@pytest.mark.soak
@pytest.mark.timeout(3600)  # a hang fails here: no request may wait on a stream that never ends
def test_ten_thousand_generated_requests_get_no_server_error() -> None:
    from hypothesis import given

    operations = [found.ok() for found in schema.get_all_operations()]
    sent: dict[str, int] = {}
    statuses: dict[int, int] = {}

    def fuzz(operation: Any, examples: int) -> None:
        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def one(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
            key = f"{operation.method.upper()} {operation.path}"
            sent[key] = sent.get(key, 0) + 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            case.validate_response(response, checks=[not_a_server_error])

        one()

    # Operations without parameters have few distinct requests and hypothesis stops early:
    # rounds go on, over the operations that still produce new ones, up to the total.
    per_round = SOAK_REQUESTS // len(operations) + 1
    for _ in range(20):
        before = sum(sent.values())
        for operation in operations:
            fuzz(operation, per_round)
        if sum(sent.values()) >= SOAK_REQUESTS or sum(sent.values()) == before:
            break
    total = sum(sent.values())
    print(f"generated requests: {total} over {len(sent)} operations; statuses {dict(sorted(statuses.items()))}")
    assert total >= SOAK_REQUESTS
    assert not [code for code in statuses if code >= 500]
