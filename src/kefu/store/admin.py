"""The admin side of a store: the account lifecycle and the API's keys, on both backends.

`AdminQueries` is mixed into `SqliteStore` and `PostgresStore`: each method
runs the portable function of `queries.py` through the store's `_run` (a
worker thread on SQLite, `run_sync` on PostgreSQL), so the SQL is written
once. None of this is on the message path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection

from kefu.store import queries
from kefu.store.base import Account, AccountFilter, AccountUpdate, ApiKey

P = ParamSpec("P")
T = TypeVar("T")


class AdminQueries:
    """The lifecycle and API-key methods of the `Store` protocol (see `base.Store`)."""

    async def _run(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        raise NotImplementedError

    async def list_accounts(
        self, where: AccountFilter, after: str | None, limit: int
    ) -> list[Account]:
        return await self._run(queries.list_accounts, where, after, limit)

    async def update_account(self, account_id: str, update: AccountUpdate) -> Account | None:
        return await self._run(queries.update_account, account_id, update)

    async def erase_account(self, account_id: str, now: float) -> Account | None:
        return await self._run(queries.erase_account, account_id, now)

    async def create_api_key(self, key: ApiKey, key_hash: str) -> ApiKey:
        return await self._run(queries.create_api_key, key, key_hash)

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return await self._run(queries.api_key_by_hash, key_hash)

    async def list_api_keys(self) -> list[ApiKey]:
        return await self._run(queries.list_api_keys)

    async def revoke_api_key(self, name_or_id: str, now: float) -> ApiKey | None:
        return await self._run(queries.revoke_api_key, name_or_id, now)

    async def touch_api_key(self, key_id: str, now: float) -> None:
        await self._run(queries.touch_api_key, key_id, now)

    async def delete_api_key(self, key_id: str) -> None:
        await self._run(queries.delete_api_key, key_id)
