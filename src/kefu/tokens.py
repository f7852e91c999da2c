"""Signed tokens: HS256 JWTs with the algorithm pinned and `exp` required.

Two kinds of tokens are signed with the same secret:

* tokens kefu issues for its **local** accounts (`kefu token`, the console's
  sign-in) carry the claim `kefu: "local"` and the account's kefu id as `sub`;
  nothing else in them is believed: the account's role and profile are read
  from the database;
* tokens a **host application** signs for its own users carry its user id as
  `sub` (and `role`, optionally `username`, `nickname`, `avatar`): they name
  external accounts only, created or updated from the claims on first use.
  Their `sub` is never matched against a local account's id or username,
  so no host token can take over an account that kefu made.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from kefu.core.model import AccountKind, Role
from kefu.store.base import Account

ALGORITHM = "HS256"
ROLE_NAMES = tuple(r.value for r in Role)
LOCAL_CLAIM = "kefu"  # value "local" on tokens kefu issues for its own accounts


class TokenError(Exception):
    """The token is missing, malformed, badly signed, expired or lacks claims."""


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    role: Role
    username: str | None
    nickname: str | None
    avatar: str | None
    exp: float = float("inf")  # the token is valid while time.time() < exp
    local: bool = False  # issued by kefu for a local account: `sub` is a kefu account id
    iat: float | None = None


def issue(secret: str, account: Account, ttl: int, now: float | None = None) -> str:
    """A token for `account`: a local one names its kefu id, an external one its `sub`."""
    now = time.time() if now is None else now
    claims: dict[str, object] = {
        "role": account.role.value,
        "username": account.username,
        "nickname": account.nickname,
        "avatar": account.avatar,
        # to the millisecond: a logout refuses the tokens issued before it (`tokens_after`),
        # and a sign-in right after it must not be taken for one of them
        "iat": math.floor(now * 1000) / 1000,
        "exp": int(now) + ttl,
    }
    if account.kind is AccountKind.LOCAL:
        claims.update(sub=account.id, **{LOCAL_CLAIM: "local"})
    else:
        claims["sub"] = account.external_id or account.id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str) -> Claims:
    """Check a token (a `Bearer ` prefix is accepted) and return its claims."""
    if not isinstance(token, str):
        raise TokenError("token must be a string")
    if token.startswith("Bearer "):
        token = token[len("Bearer ") :]
    token = token.strip()
    if not token:
        raise TokenError("token is empty")
    try:
        data = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"]},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {exc}") from None
    sub, role = data.get("sub"), data.get("role", "user")
    if not isinstance(sub, str) or not sub or len(sub) > 64:
        raise TokenError("invalid token: `sub` must be a non-empty string")
    if role not in ROLE_NAMES:
        raise TokenError(f"invalid token: `role` must be one of {', '.join(ROLE_NAMES)}")
    iat = data.get("iat")
    return Claims(
        sub=sub,
        role=Role(role),
        username=_opt_str(data.get("username"), 64),
        nickname=_opt_str(data.get("nickname"), 128),
        avatar=_opt_str(data.get("avatar"), 2048),
        exp=float(data["exp"]),
        local=data.get(LOCAL_CLAIM) == "local",
        iat=float(iat) if isinstance(iat, int | float) else None,
    )


class Verifier:
    """`verify` that remembers the tokens it has accepted, until each one expires.

    A client that reconnects with the token it used before (the widget does,
    after every drop) is then recognised without checking the signature
    again. Only accepted tokens are kept, keyed by the exact string, at most
    `size` of them (the oldest go first); refused tokens are checked every time.
    """

    def __init__(
        self, secret: str, size: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = secret
        self._size = size
        self._clock = clock
        self._accepted: dict[str, Claims] = {}

    def __call__(self, token: str) -> Claims:
        accepted = self._accepted
        claims = accepted.get(token) if isinstance(token, str) else None
        if claims is not None:
            if self._clock() < claims.exp:
                return claims
            del accepted[token]
        claims = verify(self._secret, token)
        if len(accepted) >= self._size:
            del accepted[next(iter(accepted))]
        accepted[token] = claims
        return claims


def _opt_str(value: object, limit: int) -> str | None:
    if isinstance(value, str) and len(value) <= limit:
        return value
    return None
