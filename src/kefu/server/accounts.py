"""Accounts as the server sees them: token -> account, with a cache in front of the store."""

from __future__ import annotations

from kefu.store.base import Account, AccountExists, Store
from kefu.tokens import Claims, TokenError, Verifier


class Accounts:
    def __init__(self, store: Store, secret: str) -> None:
        self._store = store
        self.verify = Verifier(secret)  # token -> Claims, or TokenError
        self._cache: dict[str, Account] = {}

    def known(self, claims: Claims) -> Account | None:
        """The account `claims` name if it is cached and the claims change nothing in it."""
        known = self._cache.get(claims.sub)
        if known is None:
            return None
        return known if claims.account(known) == known else None

    def names(self, claims: Claims, account: Account) -> bool:
        """True if `claims` are a token of `account`."""
        return claims.sub == account.id

    async def load(self, claims: Claims) -> Account:
        """The account `claims` name; created or updated from the claims if needed."""
        known = self._cache.get(claims.sub)
        if known is None:
            known = await self._store.get_account(claims.sub)
        account = claims.account(known)
        if account != known:
            await self._upsert(account)
        self._cache[account.id] = account
        return account

    async def authenticate(self, token: str) -> Account:
        """The account a token names; created or updated from the token's claims if needed."""
        claims = self.verify(token)
        return self.known(claims) or await self.load(claims)

    async def by_username(self, username: str) -> Account | None:
        return await self._store.get_account_by_username(username)

    async def _upsert(self, account: Account) -> None:
        try:
            await self._store.upsert_account(account)
        except AccountExists:
            raise TokenError(f"username {account.username!r} belongs to another account") from None
