"""The static files under ``/static``: the dashboard's own and the vendored API-docs assets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

#: Where the files live: inside the package, so they ship in the wheel with the code.
STATIC_DIR: Final = Path(__file__).resolve().parents[1] / "web" / "static"
#: Where they are served; open without a token (the login page needs its CSS before login).
STATIC_PATH: Final = "/static"
STATIC_NAME: Final = "static"


def static_url(root_path: str, path: str) -> str:
    """The URL of ``path`` under ``STATIC_DIR``, below ``root_path`` (a proxy's prefix)."""
    return f"{root_path.rstrip('/')}{STATIC_PATH}/{path}"


class RevalidatedStaticFiles(StaticFiles):
    """``StaticFiles`` whose responses must be revalidated before a browser reuses them.

    The file names carry no version, so a cached copy could outlive an upgrade; with
    ``no-cache`` the browser asks again each time and gets a bodiless 304 while the ETag
    still matches (https://developer.mozilla.org/docs/Web/HTTP/Headers/Cache-Control).
    """

    #: What a file answers besides OPTIONS, for the API's 405 and OPTIONS answers (errors.py).
    methods: Final = frozenset({"GET", "HEAD"})

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response
