"""The API in process over a real SQLite store and fake broker objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from dispatcher.api.app import create_app
from dispatcher.api.context import ApiContext
from dispatcher.schedules import ScheduleBook
from dispatcher.service import Dispatcher
from dispatcher.store.threaded import ThreadedTaskStore
from tests.clock import Clock
from tests.unit.dispatcher.fakes import (
    FakeBroker,
    FakeCancelPublisher,
    FakePublisher,
    client_of,
    registry,
)


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def clock() -> Clock:
    # Each reading is a millisecond after the last: listing order is submission order.
    return Clock(tick=timedelta(milliseconds=1))


@pytest.fixture
def dispatcher(
    store: ThreadedTaskStore, publisher: FakePublisher, cancels: FakeCancelPublisher, clock: Clock
) -> Dispatcher:
    """A dispatcher that validates against the test registry."""
    return Dispatcher(
        publisher=publisher,
        store=store,
        registry=registry,
        clock=clock,
        cancel_publisher=cancels,
        executor_lost_after=30,
    )


def context_of(dispatcher: Dispatcher, broker: FakeBroker) -> ApiContext:
    """The API's context over ``dispatcher``, as ``dispatcher serve`` wires it."""
    return ApiContext(
        dispatcher=dispatcher,
        broker=broker,
        schedules=ScheduleBook.of(dispatcher),
        registry=dispatcher.registry,
    )


@pytest.fixture
async def client(dispatcher: Dispatcher, broker: FakeBroker) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(create_app(context_of(dispatcher, broker))) as http:
        yield http


@pytest.fixture
async def guarded(dispatcher: Dispatcher, broker: FakeBroker) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(context_of(dispatcher, broker), token=SecretStr("tok-123"))
    async with client_of(app) as http:
        yield http
