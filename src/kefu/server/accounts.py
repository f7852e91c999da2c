"""Accounts as the server sees them: token -> account, with a cache in front of the store."""

from __future__ import annotations

from kefu.store.base import Account, AccountExists, Store
from kefu.tokens import TokenError, verify


class Accounts:
    def __init__(self, store: Store, secret: str) -> None:
        self._store = store
        self._secret = secret
        self._cache: dict[str, Account] = {}

    async def authenticate(self, token: str) -> Account:
        """The account a token names; created or updated from the token's claims if needed."""
        claims = verify(self._secret, token)
        known = self._cache.get(claims.sub)
        if known is None:
            known = await self._store.get_account(claims.sub)
        account = claims.account(known)
        if account != known:
            await self._upsert(account)
        self._cache[account.id] = account
        return account

    async def by_username(self, username: str) -> Account | None:
        return await self._store.get_account_by_username(username)

    async def _upsert(self, account: Account) -> None:
        try:
            await self._store.upsert_account(account)
        except AccountExists:
            raise TokenError(f"username {account.username!r} belongs to another account") from None
