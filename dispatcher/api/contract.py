"""``/asyncapi.json``: the wire contract of this deployment, machine-readable (AsyncAPI 2.6)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from common.asyncapi import asyncapi_document
from dispatcher.api.context import Context

router = APIRouter(tags=["contract"])


@router.get("/asyncapi.json")
async def asyncapi(context: Context) -> dict[str, Any]:
    """The AsyncAPI document of the messages on the broker, with this deployment's names
    (docs/asyncapi.json has it for the default prefix; docs/protocol.md has the rules)."""
    return asyncapi_document(context.topology)
