"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from the vendored assets: they work offline."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.responses import HTMLResponse

from dispatcher.api.static import static_url

DOCS_PATH: Final = "/docs"
OAUTH2_REDIRECT_PATH: Final = "/docs/oauth2-redirect"
REDOC_PATH: Final = "/redoc"

# Swagger UI's default validatorUrl is an online validator that the page would ask for a
# badge; null turns it off (https://swagger.io/docs/open-source-tools/swagger-ui/usage/configuration/).
_SWAGGER_UI_PARAMETERS: Final = {"validatorUrl": None}

# Every asset is the dispatcher's own, so the pages need no other host; the policy makes a
# browser keep to that for whatever a vendored bundle still links to (ReDoc's sidebar logo
# on its vendor's CDN, which hides itself when refused). Inline scripts and styles stay
# allowed: FastAPI's pages start Swagger UI from one, and both bundles style inline.
# https://developer.mozilla.org/docs/Web/HTTP/CSP
DOCS_CSP: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "worker-src 'self' blob:",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    )
)

router = APIRouter(include_in_schema=False)


@router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over this app's OpenAPI document."""
    root = _root_path(request)
    page = get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=static_url(root, "vendor/swagger-ui/swagger-ui-bundle.js"),
        swagger_css_url=static_url(root, "vendor/swagger-ui/swagger-ui.css"),
        swagger_favicon_url=static_url(root, "vendor/swagger-ui/favicon-32x32.png"),
        oauth2_redirect_url=root + OAUTH2_REDIRECT_PATH,
        swagger_ui_parameters=_SWAGGER_UI_PARAMETERS,
    )
    return _kept_local(page)


@router.get(OAUTH2_REDIRECT_PATH)
async def swagger_ui_redirect() -> HTMLResponse:
    """The page an OAuth2 provider sends Swagger UI's authorize flow back to."""
    return _kept_local(get_swagger_ui_oauth2_redirect_html())


@router.get(REDOC_PATH)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc over this app's OpenAPI document, with the system's fonts instead of Google's."""
    root = _root_path(request)
    page = get_redoc_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=static_url(root, "vendor/redoc/redoc.standalone.js"),
        redoc_favicon_url=static_url(root, "vendor/swagger-ui/favicon-32x32.png"),
        with_google_fonts=False,
    )
    return _kept_local(page)


def _kept_local(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page


def _root_path(request: Request) -> str:
    # Behind a proxy that strips a prefix, every URL the page loads must carry it again.
    return str(request.scope.get("root_path", "")).rstrip("/")
