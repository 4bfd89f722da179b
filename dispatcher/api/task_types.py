"""``/task-types``: the task types the dispatcher validates against, with their JSON Schemas."""

from __future__ import annotations

from fastapi import APIRouter

from dispatcher.api.context import Context
from dispatcher.api.schemas import TaskTypeInfo, TaskTypeList

router = APIRouter(tags=["task types"])


@router.get("/task-types")
async def list_task_types(context: Context) -> TaskTypeList:
    """Names and params schemas from WQ_DISPATCHER_TASKS; empty when none is loaded."""
    registry = context.registry
    if registry is None:
        return TaskTypeList(task_types=[])
    return TaskTypeList(
        task_types=[
            TaskTypeInfo(
                name=name, params_schema=registry.get(name).params_schema(), source="dispatcher"
            )
            for name in registry.names()
        ]
    )
