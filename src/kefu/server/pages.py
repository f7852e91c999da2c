"""The web pages kefu serves itself: the visitor page, the waiter console, their assets."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from kefu.server.accounts import Accounts
from kefu.settings import Settings

WEB_DIR = Path(__file__).parent / "web"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' http: https: data:; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _page(name: str):  # type: ignore[no-untyped-def]
    async def page(request: Request) -> Response:
        return FileResponse(WEB_DIR / name, headers=SECURITY_HEADERS, media_type="text/html")

    return page


def web_routes(settings: Settings, accounts: Accounts) -> list[BaseRoute]:
    return [
        Route("/v1/ws/example/user", _page("user.html")),
        Route("/v1/ws/example/waiter", _page("waiter.html")),
        Route("/console", _page("waiter.html")),
        Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
    ]
