"""The API reads no request body over its limit: 413, before or while it arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from dispatcher.api.app import create_app
from dispatcher.service import Dispatcher
from tests.unit.dispatcher.api.conftest import context_of
from tests.unit.dispatcher.fakes import FakeBroker, client_of

LIMIT = 2048
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def small(dispatcher: Dispatcher, broker: FakeBroker) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(create_app(context_of(dispatcher, broker), max_body_bytes=LIMIT)) as http:
        yield http


def _body(size: int) -> bytes:
    padding = "a" * (size - len('{"task_type":"word_count","params":{"text":""}}'))
    return ('{"task_type":"word_count","params":{"text":"' + padding + '"}}').encode()


async def test_a_body_over_the_declared_limit_is_refused_with_413(
    small: httpx.AsyncClient,
) -> None:
    response = await small.post("/tasks", content=_body(LIMIT + 1), headers=JSON)

    assert response.status_code == 413
    assert "WQ_DISPATCHER_HTTP_MAX_BODY_BYTES" in response.json()["detail"]


async def test_a_chunked_body_is_refused_once_it_passes_the_limit(
    small: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        body = _body(LIMIT * 4)
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    response = await small.post("/tasks", content=chunks(), headers=JSON)

    assert response.status_code == 413


async def test_a_body_within_the_limit_is_read(small: httpx.AsyncClient) -> None:
    response = await small.post("/tasks", content=_body(LIMIT), headers=JSON)

    assert response.status_code == 201, response.text


async def test_a_content_length_that_is_not_a_number_is_a_400(small: httpx.AsyncClient) -> None:
    response = await small.post("/tasks", content=b"{}", headers={"Content-Length": "12abc"})

    assert response.status_code == 400
