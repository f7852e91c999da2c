"""`POST /v1/auth/login`: username and password in, a signed token and the profile out.

This is the console's sign-in form. Accounts get a password with
`kefu users create --password`; an account without one cannot sign in here
(it still works with tokens). Failures are JSON with HTTP 401 and one message
that does not tell a wrong username from a wrong password (an unknown
username is checked against a dummy hash, so it takes the same time).

In order, each refusal before anything costlier happens:

* 403 for an `Origin` that the chat sockets would refuse too (another site's
  page posting a guessed password from a visitor's browser);
* 415 unless the body is `application/json` (a cross-site form cannot send it
  without asking first);
* 413 for a body over 4 KiB: from `Content-Length` before reading, else
  counted while it streams in; nothing beyond the limit is kept;
* 429 (with `Retry-After`) once the client address or the username has had
  `login_max_failures` attempts within `login_window` seconds: attempts are
  counted before the password is checked (see `throttle.py`);
* 503 (`Retry-After: 1`) when every password thread is busy and the waiting
  line is full (see `passwords.py`).

The client address is the peer, or what a proxy in `KEFU_TRUSTED_PROXIES`
says it forwarded.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kefu.passwords import PasswordChecker, PasswordsBusy
from kefu.protocol import codes
from kefu.server.accounts import Accounts
from kefu.server.metrics import Metrics
from kefu.server.origin import origin_allowed
from kefu.server.proxies import TrustedProxies
from kefu.server.throttle import LoginThrottle, Throttled, address_key
from kefu.settings import Settings
from kefu.tokens import issue

MAX_BODY_BYTES = 4096
_NO_STORE = {"Cache-Control": "no-store"}


class Refused(Exception):
    """A request answered with an error before its password is checked."""

    def __init__(
        self, http_status: int, status: int, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        body = {"status": self.status, "message": self.message, "data": None}
        headers = dict(_NO_STORE)
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return JSONResponse(body, status_code=self.http_status, headers=headers)


def _bad(message: str) -> Refused:
    return Refused(400, codes.INVALID_PARAMS, message)


def _too_large() -> Refused:
    return Refused(413, codes.INVALID_PARAMS, "request body is too large")


def _throttled(exc: Throttled) -> Refused:
    message = "too many sign-in attempts; try later"
    return Refused(429, codes.NO_PERMISSION, message, exc.retry_after)


def login_route(
    settings: Settings,
    accounts: Accounts,
    checker: PasswordChecker | None = None,
    *,
    metrics: Metrics | None = None,
) -> Route:
    throttle = LoginThrottle(settings.login_max_failures, settings.login_window)
    checker = checker or PasswordChecker(settings.password_workers, settings.password_queue)
    proxies = TrustedProxies(settings.trusted_proxies)
    secret = settings.signing_secret()

    async def sign_in(request: Request) -> dict[str, Any]:
        _check_headers(request, settings)
        peer = request.client.host if request.client else None
        # every X-Forwarded-For line, in order: HAProxy adds its own line after the client's
        forwarded = ", ".join(request.headers.getlist("x-forwarded-for")) or None
        address = address_key(proxies.client(peer, forwarded))
        try:
            throttle.check_address(address, time.monotonic())
        except Throttled as exc:
            raise _throttled(exc) from None
        username, password = _credentials(await _read_body(request))

        try:
            attempt = throttle.begin(username, address, time.monotonic())
        except Throttled as exc:
            raise _throttled(exc) from None
        try:
            account = await accounts.by_username(username)
            ok = await checker.check(account.password_hash if account else None, password)
        except PasswordsBusy:
            throttle.not_checked(attempt)
            message = "too many sign-ins at once; try again"
            raise Refused(503, codes.UNKNOWN, message, retry_after=1) from None
        except Exception:  # e.g. the database is down: nothing was learnt about the password
            throttle.not_checked(attempt)
            raise
        if not ok or account is None:
            raise Refused(401, codes.NOT_AUTHENTICATED, "wrong username or password")
        throttle.succeeded(attempt)
        return {
            "token": issue(secret, account, settings.token_ttl),
            "profile": account.profile().as_payload(),
            "role": account.role,
            "expires_in": settings.token_ttl,
        }

    async def login(request: Request) -> JSONResponse:
        try:
            return JSONResponse(await sign_in(request), headers=_NO_STORE)
        except Refused as refused:
            if metrics is not None:
                metrics.login_refused(refused.http_status)
            return refused.response()

    return Route("/v1/auth/login", login, methods=["POST"])


def _check_headers(request: Request, settings: Settings) -> None:
    if not origin_allowed(request.headers.get("origin"), request.headers.get("host"), settings):
        raise Refused(403, codes.NO_PERMISSION, "this origin may not sign in here")
    if not _is_json(request.headers.get("content-type")):
        raise Refused(415, codes.INVALID_PARAMS, "the body must be application/json")
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise _bad("Content-Length is not a number")
    if length is not None and int(length) > MAX_BODY_BYTES:
        raise _too_large()


def _is_json(content_type: str | None) -> bool:
    """`application/json`, with at most a UTF-8 `charset` parameter (JSON is UTF-8)."""
    if content_type is None:
        return False
    media_type, *params = (part.strip() for part in content_type.split(";"))
    if media_type.lower() != "application/json":
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            return False
    return True


async def _read_body(request: Request) -> bytes:
    """The body, refused (413) as soon as it passes MAX_BODY_BYTES; what follows is not kept."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > MAX_BODY_BYTES:
                raise _too_large()
            body += chunk
    except ClientDisconnect:
        raise _bad("the request body was cut short") from None
    return bytes(body)


def _credentials(body: bytes) -> tuple[str, str]:
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _bad("the body must be JSON") from None
    username = data.get("username") if isinstance(data, dict) else None
    password = data.get("password") if isinstance(data, dict) else None
    if not isinstance(username, str) or not isinstance(password, str):
        raise _bad("username and password are required")
    username = username.strip()
    if not username or not password:
        raise _bad("username and password are required")
    if not (_is_text(username) and _is_text(password)) or "\x00" in username:
        raise _bad("username and password must be text")
    return username, password


def _is_text(value: str) -> bool:
    """False for lone surrogates (`"\\ud800"` is valid JSON but cannot be encoded)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
