"""`/v1/api/docs`: Swagger UI for the admin API, served from kefu itself.

FastAPI's own docs page loads Swagger UI from a CDN and starts it with an
inline script; this one serves the vendored files of `docs/` (see its
README) and starts Swagger UI from `docs/init.js`, under a CSP that allows
same-origin scripts and styles only. The page and the OpenAPI document are
public (they hold no data); every API call made from the page needs a
credential, entered with its "Authorize" button.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, RedirectResponse, Response

from kefu.server.api.errors import not_found

DOCS_DIR = Path(__file__).parent / "docs"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "init.js": "text/javascript; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def docs() -> Response:
    return FileResponse(DOCS_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/docs/")
async def docs_slash() -> Response:
    return RedirectResponse("../docs", status_code=308)


@router.get("/docs/{name}")
async def docs_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise not_found("no such file")
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    return FileResponse(DOCS_DIR / name, media_type=media_type, headers=headers)
