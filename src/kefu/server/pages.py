"""The web pages kefu serves itself: the visitor page, the waiter console, their assets.

* `/v1/ws/example/user`: a demo page that embeds the visitor widget.
* `/v1/ws/example/waiter` and `/console`: the waiter console.
* `/widget.js`: the one script a site adds to get the widget (see docs/web.md).
* `/static/...`: the ES modules, CSS and images of all of the above (`web/assets/`).

Pages carry a Content-Security-Policy that allows only same-origin scripts and
styles, so the pages have no inline script or style at all. The assets are
public and sent with `Access-Control-Allow-Origin: *`, because the widget
loads its modules and stylesheet from kefu while running on another site.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from kefu.passwords import PasswordChecker
from kefu.server.accounts import Accounts
from kefu.server.login import login_route
from kefu.server.metrics import Metrics
from kefu.settings import Settings

WEB_DIR = Path(__file__).parent / "web"
ASSETS_DIR = WEB_DIR / "assets"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' http: https: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Assets: readable from any site (the widget runs on other sites), revalidated on every use.
ASSET_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _page(name: str):  # type: ignore[no-untyped-def]
    async def page(request: Request) -> Response:
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return FileResponse(WEB_DIR / name, headers=headers, media_type="text/html")

    return page


async def _widget(request: Request) -> Response:
    return FileResponse(
        WEB_DIR / "widget.js", headers=ASSET_HEADERS, media_type="text/javascript; charset=utf-8"
    )


class _Assets(StaticFiles):
    """StaticFiles with the asset headers, and JavaScript always as text/javascript."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(ASSET_HEADERS)
        if str(full_path).endswith(".js"):
            response.headers["content-type"] = "text/javascript; charset=utf-8"
        return response


def web_routes(
    settings: Settings,
    accounts: Accounts,
    checker: PasswordChecker | None = None,
    *,
    metrics: Metrics | None = None,
) -> list[BaseRoute]:
    return [
        Route("/v1/ws/example/user", _page("user.html")),
        Route("/v1/ws/example/waiter", _page("waiter.html")),
        Route("/console", _page("waiter.html")),
        Route("/widget.js", _widget),
        login_route(settings, accounts, checker, metrics=metrics),
        Mount("/static", _Assets(directory=ASSETS_DIR), name="static"),
    ]
