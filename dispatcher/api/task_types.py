"""``/task-types``: the task types the dispatcher knows, with their params' JSON Schemas.

Two sources: the dispatcher's own task module (``WQ_DISPATCHER_TASKS``) and what executors
published in their heartbeats (``dispatcher.fleet``).
"""

from __future__ import annotations

from fastapi import APIRouter

from common import TaskRegistry
from dispatcher.api.context import Context
from dispatcher.api.schemas import TaskTypeInfo, TaskTypeList

router = APIRouter(tags=["task types"])


@router.get("/task-types")
async def list_task_types(context: Context) -> TaskTypeList:
    """Task types from WQ_DISPATCHER_TASKS and from executors, by name; each says its source."""
    published = [
        TaskTypeInfo(
            name=record.name,
            params_schema=record.params_schema,
            description=record.description,
            options=record.options,
            source="executor",
            published_by=record.published_by,
            updated_at=record.updated_at,
        )
        for record in await context.dispatcher.fleet.task_types()
    ]
    listed = _local(context.registry) + published
    return TaskTypeList(task_types=sorted(listed, key=lambda t: (t.name, t.source)))


def _local(registry: TaskRegistry | None) -> list[TaskTypeInfo]:
    if registry is None:
        return []
    described = (registry.get(name).describe() for name in registry.names())
    return [
        TaskTypeInfo(
            name=info.name,
            params_schema=info.params_schema,
            description=info.description,
            options=info.options,
            source="dispatcher",
        )
        for info in described
    ]
