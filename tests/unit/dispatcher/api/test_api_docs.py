"""``/docs`` and ``/redoc`` from the vendored assets, and the open ``/static/`` prefix."""

from __future__ import annotations

import re

import httpx
import pytest

from dispatcher.api.app import create_app
from dispatcher.api.static import STATIC_DIR
from dispatcher.service import Dispatcher
from tests.unit.dispatcher.api.conftest import context_of
from tests.unit.dispatcher.fakes import FakeBroker

ASSETS = {
    "vendor/swagger-ui/swagger-ui-bundle.js": "javascript",
    "vendor/swagger-ui/swagger-ui.css": "text/css",
    "vendor/swagger-ui/favicon-32x32.png": "image/png",
    "vendor/redoc/redoc.standalone.js": "javascript",
}
_LOADED = re.compile(r'(?:src|href|url)\s*[=:]\s*["\']([^"\']+)["\']')


def loaded_urls(html: str) -> list[str]:
    """What a docs page's HTML loads: scripts, styles, the favicon and the OpenAPI URL."""
    return _LOADED.findall(html)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_the_docs_pages_load_only_this_apps_own_urls(
    client: httpx.AsyncClient, path: str
) -> None:
    page = await client.get(path)

    assert page.status_code == 200
    urls = loaded_urls(page.text)
    assert "/openapi.json" in urls
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "fonts.googleapis" not in page.text
    assert "img-src 'self' data:" in page.headers["content-security-policy"]
    for url in urls:
        assert (await client.get(url)).status_code == 200, url


async def test_the_vendored_assets_are_served_with_their_types(client: httpx.AsyncClient) -> None:
    for path, content_type in ASSETS.items():
        asset = await client.get(f"/static/{path}")

        assert asset.status_code == 200, path
        assert content_type in asset.headers["content-type"]
        assert asset.content == (STATIC_DIR / path).read_bytes()


async def test_a_static_file_is_revalidated_and_unchanged_costs_a_304(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/static/vendor/swagger-ui/swagger-ui.css")
    again = await client.get(
        "/static/vendor/swagger-ui/swagger-ui.css",
        headers={"If-None-Match": first.headers["etag"]},
    )

    assert first.headers["cache-control"] == "no-cache"
    assert again.status_code == 304
    assert again.content == b""


async def test_the_oauth2_redirect_page_is_served(client: httpx.AsyncClient) -> None:
    redirect = await client.get("/docs/oauth2-redirect")

    assert redirect.status_code == 200
    assert "oauth2" in redirect.text


async def test_behind_a_proxy_prefix_the_pages_load_urls_under_it(
    dispatcher: Dispatcher, broker: FakeBroker
) -> None:
    app = create_app(context_of(dispatcher, broker))
    transport = httpx.ASGITransport(app=app, root_path="/wq")
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        for path in ("/docs", "/redoc"):
            urls = loaded_urls((await client.get(path)).text)

            assert urls
            assert all(url.startswith("/wq/") for url in urls), urls


async def test_with_a_token_static_files_are_open_and_the_rest_is_not(
    guarded: httpx.AsyncClient,
) -> None:
    asset = await guarded.get("/static/vendor/redoc/redoc.standalone.js")

    assert asset.status_code == 200
    assert (await guarded.get("/tasks")).status_code == 401
    assert (await guarded.get("/docs")).status_code == 401
    assert (await guarded.get("/redoc")).status_code == 401
    assert (await guarded.get("/static")).status_code == 401


@pytest.mark.parametrize("path", ["/static/%2e%2e/tasks", "/static/..%2fopenapi.json"])
async def test_the_open_prefix_reaches_files_only(guarded: httpx.AsyncClient, path: str) -> None:
    escaped = await guarded.get(path)

    assert escaped.status_code == 404
    assert "tasks" not in escaped.text


async def test_a_static_file_answers_get_and_head_only(client: httpx.AsyncClient) -> None:
    options = await client.options("/static/vendor/redoc/LICENSE")
    posted = await client.post("/static/vendor/redoc/LICENSE")

    assert options.status_code == 204
    assert options.headers["allow"] == "GET, HEAD, OPTIONS"
    assert posted.status_code == 405
    assert posted.headers["allow"] == "GET, HEAD, OPTIONS"
