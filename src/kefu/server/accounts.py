"""Accounts as the server sees them: token -> account, with a cache in front of the store.

Local accounts (made by kefu) and external ones (made from a host
application's tokens) are looked up in separate namespaces: a token kefu
issued names a local account by its id and changes nothing in it; a host
token names an external account by its `sub` and creates or updates it from
its claims. See `kefu.tokens`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from kefu.core.model import AccountKind
from kefu.store.base import Account, AccountExists, Store
from kefu.tokens import Claims, TokenError, Verifier


def external_account(claims: Claims, known: Account | None, account_id: str) -> Account:
    """The external account host-token `claims` describe, keeping what they leave out."""
    return Account(
        id=account_id,
        username=claims.username or (known.username if known else claims.sub),
        role=claims.role,
        nickname=claims.nickname
        if claims.nickname is not None
        else (known.nickname if known else None),
        avatar=claims.avatar if claims.avatar is not None else (known.avatar if known else ""),
        kind=AccountKind.EXTERNAL,
        external_id=claims.sub,
    )


class Accounts:
    def __init__(self, store: Store, secret: str, new_id: Callable[[], str]) -> None:
        self._store = store
        self._new_id = new_id
        self.verify = Verifier(secret)  # token -> Claims, or TokenError
        self._local: dict[str, Account] = {}  # kefu id -> local account
        self._external: dict[str, Account] = {}  # host `sub` -> external account

    def known(self, claims: Claims) -> Account | None:
        """The account `claims` name if it is cached and the claims change nothing in it."""
        if claims.local:
            return self._local.get(claims.sub)
        known = self._external.get(claims.sub)
        if known is None:
            return None
        return known if external_account(claims, known, known.id) == known else None

    def names(self, claims: Claims, account: Account) -> bool:
        """True if `claims` are a token of `account`."""
        if claims.local:
            return account.kind is AccountKind.LOCAL and claims.sub == account.id
        return account.kind is AccountKind.EXTERNAL and claims.sub == account.external_id

    async def load(self, claims: Claims) -> Account:
        """The account `claims` name: a local one as stored, an external one made or updated."""
        if claims.local:
            return await self._load_local(claims.sub)
        return await self._load_external(claims)

    async def _load_local(self, account_id: str) -> Account:
        account = self._local.get(account_id) or await self._store.get_account(account_id)
        if account is None or account.kind is not AccountKind.LOCAL:
            raise TokenError("invalid token: no such account")
        self._local[account_id] = account
        return account

    async def _load_external(self, claims: Claims) -> Account:
        sub = claims.sub
        known = self._external.get(sub) or await self._store.get_external_account(sub)
        # kefu's id for a new one is the host's, unless another account has that id already
        account = external_account(claims, known, known.id if known is not None else sub)
        if account != known:
            try:
                await self._store.upsert_account(account)
            except AccountExists:
                if known is not None:
                    raise TokenError(
                        f"username {account.username!r} belongs to another account"
                    ) from None
                account = replace(account, id=self._new_id())  # the id is another account's
                await self._upsert_or_refuse(account)
        self._external[sub] = account
        return account

    async def _upsert_or_refuse(self, account: Account) -> None:
        try:
            await self._store.upsert_account(account)
        except AccountExists:
            raise TokenError(f"username {account.username!r} belongs to another account") from None

    async def by_username(self, username: str) -> Account | None:
        """A local account by username (the console's sign-in)."""
        return await self._store.get_account_by_username(username, AccountKind.LOCAL)
