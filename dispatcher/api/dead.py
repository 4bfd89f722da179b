"""``/dead``: the dead-letter queue over HTTP, as ``dispatcher dead list|replay|purge``."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field, model_validator

from dispatcher.amqp.dead_letters import DeadLetter, DeadLetterDesk
from dispatcher.api.context import ApiContext, Context
from dispatcher.api.schemas import ErrorDetail

router = APIRouter(prefix="/dead", tags=["dead letters"])

MAX_LISTED = 500
MAX_REPLAY_IDS = 1000


class DeadLetters(BaseModel):
    """Dead messages, oldest first, as their headers describe them; the queue is left as it
    was."""

    dead: list[DeadLetter]


class ReplayRequest(BaseModel):
    """Which dead tasks to replay: ``task_ids``, or ``all``."""

    task_ids: list[UUID] = Field(default_factory=list, max_length=MAX_REPLAY_IDS)
    all: bool = False

    @model_validator(mode="after")
    def _ids_or_all(self) -> ReplayRequest:
        if self.all == bool(self.task_ids):
            raise ValueError("give task_ids, or all: true, not both")
        return self


class ReplayAnswer(BaseModel):
    """What a replay did: tasks published as their next attempt, and messages left alone."""

    replayed: list[UUID]
    skipped: list[str]
    missing: list[UUID] = Field(description="Ids asked for that are not in the queue.")


class PurgeRequest(BaseModel):
    """A purge deletes every dead message, or those of ``task_ids``: ``confirm`` must be
    true."""

    confirm: Literal[True] = Field(description="true: this cannot be undone.")
    task_ids: list[UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_REPLAY_IDS,
        description="Only these tasks' messages (default: every message).",
    )


class Purged(BaseModel):
    """How many dead messages a purge deleted."""

    purged: int


def _desk(context: ApiContext) -> DeadLetterDesk:
    if context.dead is None:
        raise HTTPException(503, "the dead-letter queue is not reachable from this dispatcher")
    return context.dead


@router.get("", response_model=DeadLetters, responses={503: {"model": ErrorDetail}})
async def list_dead(
    context: Context, limit: Annotated[int, Query(ge=1, le=MAX_LISTED)] = 50
) -> DeadLetters:
    """Up to ``limit`` dead messages with their reasons, oldest first (none is removed)."""
    return DeadLetters(dead=await _desk(context).list(limit=limit))


@router.post("/replay", response_model=ReplayAnswer, responses={503: {"model": ErrorDetail}})
async def replay_dead(body: ReplayRequest, context: Context) -> ReplayAnswer:
    """Run dead tasks again as their next attempt, back on their own queues."""
    report = await _desk(context).replay(None if body.all else body.task_ids, via="http")
    missing = sorted(set(body.task_ids) - set(report.replayed), key=str)
    return ReplayAnswer(replayed=report.replayed, skipped=report.skipped, missing=missing)


@router.post("/purge", response_model=Purged, responses={503: {"model": ErrorDetail}})
async def purge_dead(body: PurgeRequest, context: Context) -> Purged:
    """Delete every dead message (``{"confirm": true}``, else 422); this cannot be undone."""
    return Purged(purged=await _desk(context).purge(body.task_ids))
