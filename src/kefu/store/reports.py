"""The admin side's reads and retention, on both backends (the SQL is `record_queries.py`).

`Reports` is mixed into `SqliteStore` and `PostgresStore`, as `AdminQueries`
is: each method runs its portable function through the store's `_run` (a
worker thread on SQLite, `run_sync` on PostgreSQL). A purge batch deletes
from a pooled connection, beside the writer: on SQLite the writer waits for
the write lock without blocking the loop, for as long as one short batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection

from kefu.store import record_queries as q
from kefu.store.records import (
    ConversationFilter,
    ConversationRecord,
    MessageRecord,
    PeriodStats,
    Purged,
    QueuedRecord,
)

P = ParamSpec("P")
T = TypeVar("T")


class Reports:
    """The record methods of the `Store` protocol (see `base.Store`)."""

    async def _run(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        raise NotImplementedError

    async def list_conversations(
        self,
        where: ConversationFilter,
        after: tuple[int, str] | None,
        limit: int,
        *,
        oldest_first: bool = False,
    ) -> list[ConversationRecord]:
        return await self._run(q.list_conversations, where, after, limit, oldest_first=oldest_first)

    async def list_queued(
        self, where: ConversationFilter, after: tuple[int, int] | None, limit: int
    ) -> list[QueuedRecord]:
        return await self._run(q.list_queued, where, after, limit)

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        return await self._run(q.get_conversation, conversation_id)

    async def conversation_messages(
        self, conversation_id: str, after: str | None, limit: int
    ) -> list[MessageRecord]:
        return await self._run(q.conversation_messages, conversation_id, after, limit)

    async def period_stats(self, since: float, until: float) -> PeriodStats:
        return await self._run(q.period_stats, since, until)

    async def purge_batch(
        self, before: float, *, conversations_max: int = 500, messages_max: int = 5000
    ) -> Purged:
        return await self._run(
            q.purge_batch,
            before,
            conversations_max=conversations_max,
            messages_max=messages_max,
        )
