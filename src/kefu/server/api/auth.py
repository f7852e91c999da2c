"""Who is calling the admin API: an API key, or a token of an `admin` account.

Every request carries `Authorization: Bearer <credential>`:

* an **API key** (`kefu api-keys create NAME [--read-only]`): `kefu_` and
  43 characters of a 256-bit random value. Only its SHA-256 is stored (a
  random key of that size needs no slow hash), looked up on every request, so
  a revoked key is refused at once on every node. A read-only key may only
  read (GET); anything else is 403.
* a **token** of an account whose role is `admin`, checked as the chat
  sockets check theirs (`Accounts`): signature, expiry, the account not
  disabled and the token not older than its last logout. Another role: 403.

Missing, malformed, unknown, revoked or expired credentials: 401.

Routes say what they need with `Reader` (any caller; methods other than GET
and HEAD still need a key that is not read-only) or `Writer` (never a
read-only key), e.g. `async def show(caller: Reader, ctx: Ctx)`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import Request

from kefu.core.model import Role
from kefu.server.api.context import ApiContext, Ctx
from kefu.server.api.errors import forbidden, unauthorized
from kefu.tokens import TokenError

KEY_PREFIX = "kefu_"
VISIBLE_CHARS = 12  # of a key, kept to tell keys apart in a listing ("kefu_" + 7)
READ_METHODS = frozenset({"GET", "HEAD"})
TOUCH_EVERY = 60.0  # seconds: a key's last use is written at most this often per node

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`kefu api-keys create`) or a token of an admin account.",
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made the request: an API key (its id and name) or an admin account."""

    kind: Literal["key", "account"]
    id: str
    name: str
    read_only: bool = False


def new_key() -> str:
    """A fresh API key: shown once, never stored."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def visible_prefix(key: str) -> str:
    return key[:VISIBLE_CHARS]


def _touch_due(ctx: ApiContext, key_id: str) -> bool:
    """True if this node should write the key's `last_used_at` now (at most every minute)."""
    now = time.monotonic()
    last = ctx.key_uses.get(key_id)
    if last is not None and now - last < TOUCH_EVERY:
        return False
    ctx.key_uses[key_id] = now
    return True


async def _by_key(ctx: ApiContext, key: str) -> Caller:
    found = await ctx.store.api_key_by_hash(key_hash(key))
    if found is None or found.revoked_at is not None:
        raise unauthorized("unknown or revoked API key")
    if _touch_due(ctx, found.id):
        await ctx.store.touch_api_key(found.id, ctx.clock())
    return Caller("key", found.id, found.name, found.read_only)


async def _by_token(ctx: ApiContext, token: str) -> Caller:
    accounts = ctx.accounts
    try:
        claims = accounts.verify(token)
        account = accounts.known(claims) or await accounts.load(claims)
    except TokenError as exc:
        raise unauthorized(str(exc)) from None
    if account.role is not Role.ADMIN:
        raise forbidden("only admin accounts may use the admin API")
    return Caller("account", account.id, account.username)


async def authenticate(
    request: Request,
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller, or 401; a read-only key on anything but GET/HEAD is 403."""
    if credentials is None or not credentials.credentials.strip():
        raise unauthorized("send Authorization: Bearer <API key or admin token>")
    credential = credentials.credentials.strip()
    if credential.startswith(KEY_PREFIX):
        caller = await _by_key(ctx, credential)
    else:
        caller = await _by_token(ctx, credential)
    if caller.read_only and request.method not in READ_METHODS:
        raise forbidden("this API key is read-only")
    return caller


async def _write_access(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
    if caller.read_only:
        raise forbidden("this API key is read-only")
    return caller


Reader = Annotated[Caller, Depends(authenticate)]
Writer = Annotated[Caller, Depends(_write_access)]
