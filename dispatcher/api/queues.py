"""``/queues``: how many messages wait in each queue and how many consumers serve it."""

from __future__ import annotations

from fastapi import APIRouter

from dispatcher.api.context import Context
from dispatcher.api.schemas import ErrorDetail, QueueInfo, QueueList

router = APIRouter(tags=["broker"])


@router.get("/queues", responses={503: {"model": ErrorDetail}})
async def list_queues(context: Context) -> QueueList:
    """The deployment's queues, the named task queues executors consume among them (passive
    declares: nothing is created); 503 without a broker."""
    depths = await context.broker.queue_depths(await context.dispatcher.fleet.task_queues())
    return QueueList(
        queues=[QueueInfo(name=d.name, messages=d.messages, consumers=d.consumers) for d in depths]
    )
