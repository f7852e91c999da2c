"""`GET /v1/ws/status` (protocol section 7): the desk's figures, readable from allowed origins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from kefu.server.desk import Desk
from kefu.server.origin import cors_headers
from kefu.settings import Settings

StatusSource = Callable[[], Awaitable[dict[str, Any]]]


def desk_status(desk: Desk) -> StatusSource:
    """One node: the desk in this process."""

    async def read() -> dict[str, Any]:
        s = desk.status()
        return {
            "online_waiter_num": s.online_waiter_num,
            "online_user_num": s.online_user_num,
            "pending_num": s.pending_num,
            "matchers": s.matchers,
        }

    return read


def status_endpoint(
    read: StatusSource, settings: Settings
) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def status(request: Request) -> JSONResponse:
        headers = cors_headers(request.headers.get("origin"), request.headers.get("host"), settings)
        data = await read()
        return JSONResponse({"status": 1, "message": "", "data": data}, headers=headers)

    return status
