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

FORGOTTEN_KEPT = 10_000


def external_account(claims: Claims, known: Account | None, account_id: str) -> Account:
    """The external account host-token `claims` describe, keeping what they leave out."""
    if known is not None:  # its id, kind and lifecycle stay as they are
        return replace(
            known,
            username=claims.username or known.username,
            role=claims.role,
            nickname=claims.nickname if claims.nickname is not None else known.nickname,
            avatar=claims.avatar if claims.avatar is not None else known.avatar,
        )
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
        # `forget` counts; account id -> the count when it was last forgotten. A store read
        # that a forget of its account overtook is done again (it may predate the change).
        self._forgets = 0
        self._forgotten: dict[str, int] = {}

    def known(self, claims: Claims) -> Account | None:
        """The account `claims` name if it is cached, accepts them and they change nothing in it.

        Else None, and `load` decides (and says why it refuses).
        """
        if claims.local:
            account = self._local.get(claims.sub)
        else:
            account = self._external.get(claims.sub)
            if account is not None and external_account(claims, account, account.id) != account:
                return None
        return account if account is not None and account.accepts(claims.iat) else None

    def forget(self, account_id: str) -> None:
        """Drop the cached account: it changed (the admin API); the next token reads it again."""
        self._forgets += 1
        if len(self._forgotten) >= FORGOTTEN_KEPT:
            self._forgotten.clear()  # only reads in flight at this moment could miss it
        self._forgotten[account_id] = self._forgets
        self._local.pop(account_id, None)
        subs = [sub for sub, account in self._external.items() if account.id == account_id]
        for sub in subs:
            del self._external[sub]

    def names(self, claims: Claims, account: Account) -> bool:
        """True if `claims` are a token of `account`."""
        if claims.local:
            return account.kind is AccountKind.LOCAL and claims.sub == account.id
        return account.kind is AccountKind.EXTERNAL and claims.sub == account.external_id

    async def load(self, claims: Claims) -> Account:
        """The account `claims` name: a local one as stored, an external one made or updated.

        `TokenError` if there is none, it is disabled, or the token is older than
        its last logout (a disabled external account is not updated either).
        """
        if claims.local:
            account = await self._load_local(claims.sub)
            _check_accepts(account, claims)
            return account
        return await self._load_external(claims)

    def _overtaken(self, account: Account | None, since: int) -> bool:
        """True if `account` was forgotten after a read that started at count `since`."""
        return account is not None and self._forgotten.get(account.id, 0) > since

    async def _load_local(self, account_id: str) -> Account:
        while True:
            since = self._forgets
            account = self._local.get(account_id) or await self._store.get_account(account_id)
            if not self._overtaken(account, since):
                break
        if account is None or account.kind is not AccountKind.LOCAL:
            raise TokenError("invalid token: no such account")
        self._local[account_id] = account
        return account

    async def _load_external(self, claims: Claims) -> Account:
        sub = claims.sub
        while True:
            since = self._forgets
            known = self._external.get(sub) or await self._store.get_external_account(sub)
            if not self._overtaken(known, since):
                break
        if known is not None:
            self._external[sub] = known
            _check_accepts(known, claims)
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
        """A local account by username (the console's sign-in); None if it is disabled."""
        account = await self._store.get_account_by_username(username, AccountKind.LOCAL)
        return account if account is not None and account.disabled_at is None else None


def _check_accepts(account: Account, claims: Claims) -> None:
    if account.disabled_at is not None:
        raise TokenError("invalid token: the account is disabled")
    if not account.accepts(claims.iat):
        raise TokenError("invalid token: it was issued before the account's last logout")
