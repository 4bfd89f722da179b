"""``/health``: liveness (the process serves) and readiness (broker, results, store)."""

from __future__ import annotations

import asyncio
from typing import Final

from fastapi import APIRouter, Response

from common import StoreError
from dispatcher.api.context import Context
from dispatcher.api.schemas import Liveness, Readiness

LIVENESS_PATH: Final = "/health/live"
_STORE_TIMEOUT_S = 5.0

router = APIRouter(tags=["health"])


@router.get(LIVENESS_PATH)
async def live() -> Liveness:
    """200 while the process serves requests; needs no token."""
    return Liveness()


@router.get("/health/ready", responses={503: {"model": Readiness}})
async def ready(context: Context, response: Response) -> Readiness:
    """200 when every broker connection is open, results flow and the store answers, else 503."""
    broker = context.broker.is_connected()
    results = context.broker.results_flowing()
    try:
        async with asyncio.timeout(_STORE_TIMEOUT_S):
            await context.dispatcher.ping_store()
        store = True
    except (StoreError, TimeoutError):
        store = False
    ready = broker and results and store
    response.status_code = 200 if ready else 503
    return Readiness(ready=ready, broker=broker, results=results, store=store)
