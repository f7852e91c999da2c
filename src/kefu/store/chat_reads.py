"""The chat's reads from a store, on both backends: history, sessions, replay, restore.

`ChatReads` is mixed into `SqliteStore` and `PostgresStore`, as `AdminQueries`
is: each method runs the portable function of `queries.py` through the
store's `_run` (a worker thread on SQLite, `run_sync` on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection

from kefu.store import queries
from kefu.store.base import Conversation, HistoryEntry, OpenState, SessionEntry, StoredMessage

P = ParamSpec("P")
T = TypeVar("T")


class ChatReads:
    """The reads of the `Store` protocol that the chat makes (see `base.Store`)."""

    async def _run(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        raise NotImplementedError

    async def history(
        self, user_id: str, before: str | None = None, limit: int = 100
    ) -> list[HistoryEntry]:
        return await self._run(queries.history, user_id, before, limit)

    async def sessions(self, waiter_id: str, limit: int = 100) -> list[SessionEntry]:
        return await self._run(queries.sessions, waiter_id, limit)

    async def latest_conversation(self, user_id: str) -> Conversation | None:
        return await self._run(queries.latest_conversation, user_id)

    async def messages_after(
        self, conversation_id: str, after_id: str, limit: int = 1000
    ) -> list[StoredMessage]:
        return await self._run(queries.messages_after, conversation_id, after_id, limit)

    async def load_open_state(self) -> OpenState:
        return await self._run(queries.load_open_state)
