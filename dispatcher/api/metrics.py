"""``/metrics``: the dispatcher's Prometheus registry in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter, Response

from dispatcher.api.context import Context
from dispatcher.metrics import render

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def scrape(context: Context) -> Response:
    """This process's ``wq_`` metrics, for Prometheus to scrape. Once a token is set it is
    needed here too: give the scrape job ``authorization: {credentials: TOKEN}``."""
    body, content_type = render(context.dispatcher.metrics.registry)
    return Response(body, media_type=content_type)
