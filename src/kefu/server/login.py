"""`POST /v1/auth/login`: username and password in, a signed token and the profile out.

This is the console's sign-in form. Accounts get a password with
`kefu users create --password`; an account without one cannot sign in here
(it still works with tokens). Failures are JSON with HTTP 401 and one message
that does not tell a wrong username from a wrong password; repeated failures
from one client address are slowed down with HTTP 429.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kefu.passwords import check_password, hash_password
from kefu.protocol import codes
from kefu.server.accounts import Accounts
from kefu.settings import Settings
from kefu.store.base import Account
from kefu.tokens import issue

MAX_BODY_BYTES = 4096
MAX_FAILURES = 10  # per client address within FAILURE_WINDOW
FAILURE_WINDOW = 300.0
_NO_STORE = {"Cache-Control": "no-store"}

# Checked against when the username is unknown, so both failures cost the same time.
_DUMMY_HASH = hash_password("kefu: no such account")


def _error(http_status: int, status: int, message: str) -> JSONResponse:
    body = {"status": status, "message": message, "data": None}
    return JSONResponse(body, status_code=http_status, headers=_NO_STORE)


class _Failures:
    """Recent failed sign-ins per client address (in memory, per process)."""

    def __init__(self) -> None:
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.setdefault(client, deque())
        while times and times[0] < now - FAILURE_WINDOW:
            times.popleft()
        return times

    def blocked(self, client: str, now: float) -> float:
        """Seconds until `client` may try again (0 if it may now)."""
        times = self._recent(client, now)
        if len(times) < MAX_FAILURES:
            if not times:
                self._seen.pop(client, None)
            return 0.0
        return times[0] + FAILURE_WINDOW - now

    def add(self, client: str, now: float) -> None:
        self._recent(client, now).append(now)
        if len(self._seen) > 10_000:  # keep memory bounded under a spray of addresses
            self._seen.clear()

    def clear(self, client: str) -> None:
        self._seen.pop(client, None)


def login_route(settings: Settings, accounts: Accounts) -> Route:
    failures = _Failures()
    secret = settings.signing_secret()

    async def login(request: Request) -> JSONResponse:
        client = request.client.host if request.client else "?"
        wait = failures.blocked(client, time.monotonic())
        if wait > 0:
            response = _error(429, codes.NO_PERMISSION, "too many failed sign-ins; try later")
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, codes.INVALID_PARAMS, "request body is too large")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, codes.INVALID_PARAMS, "the body must be JSON")
        username = data.get("username") if isinstance(data, dict) else None
        password = data.get("password") if isinstance(data, dict) else None
        if not isinstance(username, str) or not isinstance(password, str):
            return _error(400, codes.INVALID_PARAMS, "username and password are required")
        if not username.strip() or not password:
            return _error(400, codes.INVALID_PARAMS, "username and password are required")

        account = await accounts.by_username(username.strip())
        if not await _password_ok(account, password):
            failures.add(client, time.monotonic())
            return _error(401, codes.NOT_AUTHENTICATED, "wrong username or password")
        assert account is not None
        failures.clear(client)
        token = issue(secret, account, settings.token_ttl)
        body_out = {
            "token": token,
            "profile": account.profile().as_payload(),
            "role": account.role,
            "expires_in": settings.token_ttl,
        }
        return JSONResponse(body_out, headers=_NO_STORE)

    return Route("/v1/auth/login", login, methods=["POST"])


async def _password_ok(account: Account | None, password: str) -> bool:
    """argon2 is slow on purpose: run it off the event loop."""
    if account is None or not account.password_hash:
        await asyncio.to_thread(check_password, _DUMMY_HASH, password)
        return False
    return await asyncio.to_thread(check_password, account.password_hash, password)
