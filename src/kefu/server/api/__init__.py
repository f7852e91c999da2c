"""The admin REST API, mounted at `/v1/api` (docs/api.md).

A FastAPI app of its own, beside the chat sockets (nothing of it runs per
frame). Its parts, for whoever adds a resource:

* `context.Ctx`: the server's store, node, accounts and settings (`ApiContext`);
* `auth.Reader` / `auth.Writer`: the caller, for reading or for changing things;
* `errors`: `ApiError` and its helpers (`not_found`, `conflict`, `bad_input`, ...),
  answered as `{"status", "message"}`;
* `pages`: `PageQuery`, `Page[...]` and `paginate` for lists;
* `values.timestamp` for times.

A resource is a module with an `APIRouter` named `router`, added below with
one line. Every route of these routers needs a credential (`create_api`
adds the check to each), and answers errors in the API's shape.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from starlette.types import ASGIApp

from kefu import __version__
from kefu.server.api import accounts, conversations, docs_page, live, stats, webhooks, whoami
from kefu.server.api.auth import authenticate
from kefu.server.api.context import ApiContext
from kefu.server.api.errors import ERROR_RESPONSES, install
from kefu.server.api.limits import BodyLimits

PREFIX = "/v1/api"

# The API's resources: one line each.
ROUTERS: list[APIRouter] = [
    whoami.router,
    accounts.router,
    conversations.router,
    live.router,
    stats.router,
    webhooks.router,
]


def create_api(ctx: ApiContext) -> ASGIApp:
    """The API as an ASGI app, to mount at `PREFIX`."""
    api = FastAPI(
        title="kefu admin API",
        version=__version__,
        description="Manage a kefu server: accounts, conversations, webhooks. See docs/api.md.",
        openapi_url="/openapi.json",
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN: see docs_page
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    api.state.kefu = ctx
    install(api)
    api.include_router(docs_page.router)
    for router in ROUTERS:
        api.include_router(router, dependencies=[Depends(authenticate)], responses=ERROR_RESPONSES)
    return BodyLimits(api)


__all__ = ["PREFIX", "ROUTERS", "ApiContext", "create_api"]
