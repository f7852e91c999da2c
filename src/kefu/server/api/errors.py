"""The admin API's errors: one JSON shape, `{"status": <HTTP status>, "message": "..."}`.

Raise `ApiError` (or one of the helpers) anywhere in a route or dependency;
`install` makes every other failure take the same shape: FastAPI's own
validation errors (422, the one status for any bad input: body, path,
query or cursor), unknown paths and methods (404, 405), a database that is
down (503) and bugs (500, logged with their traceback, never shown).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from kefu.passwords import PasswordsBusy
from kefu.store.base import StoreError

log = logging.getLogger("kefu.api")

NO_STORE = {"Cache-Control": "no-store"}


class ApiError(Exception):
    """An answer other than success: its HTTP status and a message for people."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class ErrorOut(BaseModel):
    """Every error the API answers."""

    status: int
    message: str


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, {"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def bad_input(message: str) -> ApiError:
    """Any input the API cannot take: 422, as FastAPI's own validation errors."""
    return ApiError(422, message)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"status": status, "message": message},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


# For OpenAPI: the errors any authenticated route may answer.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No or bad credentials"},
    403: {"model": ErrorOut, "description": "Not allowed (a read-only key, or not an admin)"},
    422: {"model": ErrorOut, "description": "Bad input"},
}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid input"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "error"
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, _validation_message(exc))


async def _store_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: the store failed: %s", request.method, request.url.path, type(exc).__name__)
    message = "the database is unavailable; retry later"
    return error_response(503, message, {"Retry-After": "1"})


async def _busy(request: Request, exc: Exception) -> JSONResponse:
    return error_response(503, "too many password operations at once; retry", {"Retry-After": "1"})


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error")


def install(app: FastAPI) -> None:
    """Answer every error of `app` in the API's shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StoreError, _store_down)
    app.add_exception_handler(PasswordsBusy, _busy)
    app.add_exception_handler(Exception, _bug)
