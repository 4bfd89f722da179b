"""The application factory: routers, error handlers, auth and the request log, wired once."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, FastAPI, Security
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends
from fastapi.security import HTTPBearer
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from dispatcher.api import (
    api_docs,
    cancel,
    contract,
    dead,
    executors,
    health,
    metrics,
    queues,
    retry,
    schedules,
    task_types,
    tasks,
)
from dispatcher.api.auth import BearerAuth, Doors
from dispatcher.api.body_limit import BodyLimit
from dispatcher.api.context import ApiContext
from dispatcher.api.errors import install_error_handlers
from dispatcher.api.request_log import RequestLog
from dispatcher.api.schemas import ErrorDetail
from dispatcher.api.static import STATIC_DIR, STATIC_NAME, STATIC_PATH, RevalidatedStaticFiles
from dispatcher.web import actions, pages
from dispatcher.web.rendering import Handler, Refused, for_pages, refused_page
from dispatcher.web.sessions import Sessions

# One line per feature: a router added here is served, documented and, once a token is
# set, protected by it.
ROUTERS: tuple[APIRouter, ...] = (
    retry.router,
    tasks.router,
    cancel.router,
    dead.router,
    schedules.router,
    queues.router,
    task_types.router,
    executors.router,
    metrics.router,
    contract.router,
)

_DESCRIPTION = """\
Submit, follow and cancel tasks, manage cron schedules, and look at the queues, the
executors, the task types they publish and the dispatcher's Prometheus metrics.

Once `WQ_DISPATCHER_HTTP_TOKEN` is set, every endpoint except `/health/live` (and the
static files under `/static/`) requires `Authorization: Bearer <token>`
(`WQ_DISPATCHER_HTTP_READ_TOKEN`, if set, may only read); see docs/operations.md. People
use the dashboard at `/`, which signs in with either token.
"""

# The dashboard's pages, the API's own docs and their assets, as the access rule sees them.
DOORS = Doors(
    open_paths=frozenset({health.LIVENESS_PATH, "/ui/login"}),
    open_prefixes=(f"{STATIC_PATH}/",),
    page_paths=frozenset({"/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}),
    page_prefixes=("/ui/",),
    login_path="/ui/login",
)


# A batch of 1,000 tasks with params of up to 16 KiB each.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


def create_app(
    context: ApiContext,
    *,
    token: SecretStr | None = None,
    read_token: SecretStr | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The dispatcher's API and dashboard over ``context``; with ``token``, bearer auth on
    every route (and a login form for the dashboard); ``read_token`` may only read.

    Request bodies over ``max_body_bytes`` are refused with 413 before they are read.
    """
    # The docs pages are api_docs' own: FastAPI's would load their scripts from a CDN.
    app = FastAPI(
        title="workqueue dispatcher",
        version="1",
        description=_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = context
    app.state.token_set = token is not None
    app.state.token = token
    app.state.read_token = read_token if token is not None else None
    app.state.sessions = Sessions.for_tokens(token, read_token)
    # Mounted before any router, so every /static/... path reaches the files and nothing else:
    # that is what makes the open prefix below safe.
    app.mount(STATIC_PATH, RevalidatedStaticFiles(directory=STATIC_DIR), name=STATIC_NAME)
    install_error_handlers(app)
    app.add_exception_handler(Refused, refused_page)
    for kind in (RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(kind, for_pages(cast(Handler, app.exception_handlers[kind])))
    # Auth itself is the middleware below; this only shows the scheme in the OpenAPI docs.
    documented: list[Depends] = [Security(HTTPBearer(auto_error=False))] if token else []
    # What any route may answer before its own code runs: a body that is not JSON, one over
    # the size limit, and (with a token) a missing or wrong one.
    refused: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorDetail, "description": "The body could not be parsed as JSON."},
        413: {"model": ErrorDetail, "description": "The body is over the size limit."},
    }
    if token:
        refused[401] = {"model": ErrorDetail, "description": "Missing or wrong bearer token."}
    app.include_router(health.router)
    app.include_router(api_docs.router)
    for router in ROUTERS:
        app.include_router(router, dependencies=documented, responses=refused)
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if token is not None:
        # Outside the body limit: a caller without the token is refused before any body.
        app.add_middleware(
            BearerAuth,
            token=token,
            read_token=app.state.read_token,
            sessions=app.state.sessions,
            doors=DOORS,
        )
    app.add_middleware(RequestLog)  # added last: outermost, so it sees refusals too
    return app
