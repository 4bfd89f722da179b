"""What the routes work with, built once in ``serve.py`` and handed to every request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, cast

from fastapi import Depends, Request

from common import TaskRegistry, Topology
from dispatcher.amqp.broker_monitor import BrokerMonitor
from dispatcher.amqp.dead_letters import DeadLetterDesk
from dispatcher.amqp.management import ManagementApi
from dispatcher.schedules import ScheduleBook
from dispatcher.service import Dispatcher


@dataclass(frozen=True, slots=True)
class ApiContext:
    """The service objects behind the API.

    Attributes:
        dispatcher: submits, reads, waits for and cancels tasks; its ``fleet`` knows the
            executors and their task types, its ``metrics`` the Prometheus registry.
        broker: connection state and queue depths.
        schedules: the cron schedules in the dispatcher's store.
        registry: the dispatcher's task module (``WQ_DISPATCHER_TASKS``), if it has one.
        dead: the dead-letter queue's operations (None: not on this dispatcher).
        topology: the deployment's broker names (for the AsyncAPI document).
        management: the broker's management API, if configured (queue statistics).
    """

    dispatcher: Dispatcher
    broker: BrokerMonitor
    schedules: ScheduleBook
    registry: TaskRegistry | None = None
    dead: DeadLetterDesk | None = None
    topology: Topology = field(default_factory=Topology)
    management: ManagementApi | None = None


def get_context(request: Request) -> ApiContext:
    """The ``ApiContext`` that ``create_app`` stored on the application."""
    return cast(ApiContext, request.app.state.context)


Context = Annotated[ApiContext, Depends(get_context)]
