"""REST: the status endpoint (protocol section 7)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from kefu.server.origin import cors_headers
from kefu.server.runtime import Runtime


def status_endpoint(runtime: Runtime):  # type: ignore[no-untyped-def]
    settings = runtime.settings

    async def status(request: Request) -> JSONResponse:
        s = runtime.status()
        data = {
            "online_waiter_num": s.online_waiter_num,
            "online_user_num": s.online_user_num,
            "pending_num": s.pending_num,
            "matchers": s.matchers,
        }
        headers = cors_headers(request.headers.get("origin"), request.headers.get("host"), settings)
        return JSONResponse({"status": 1, "message": "", "data": data}, headers=headers)

    return status
