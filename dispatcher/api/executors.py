"""``/executors``: the executors heartbeats told of, with their state, load and tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dispatcher.api.context import Context
from dispatcher.api.schemas import ExecutorList, ExecutorView
from dispatcher.store.records import ExecutorState

router = APIRouter(tags=["executors"])


@router.get("/executors")
async def list_executors(
    context: Context,
    state: Annotated[
        list[ExecutorState], Query(description="Any of these states; all when omitted.")
    ] = [],  # noqa: B006
) -> ExecutorList:
    """Every executor recorded in the store: running, lost or stopped, with its host, pid,
    slots, running tasks, counts, CPU and memory as of its last heartbeat."""
    executors = await context.dispatcher.fleet.executors()
    return ExecutorList(
        executors=[ExecutorView.of(e) for e in executors if not state or e.state in state]
    )
