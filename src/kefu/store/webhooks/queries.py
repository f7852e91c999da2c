"""The webhook methods both stores share, and where each of them runs."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from kefu.store.base import StoreUnavailable
from kefu.store.outbox import Outbox, Subscriptions
from kefu.store.webhooks.attempts import due, prune, record, repair
from kefu.store.webhooks.fanout import fan_out_steps
from kefu.store.webhooks.model import (
    PRUNE_ROWS,
    Delivery,
    DueDelivery,
    Outcome,
    Status,
    Steps,
    Webhook,
    drain,
)
from kefu.store.webhooks.registry import (
    create_webhook,
    delete_webhook,
    get_webhook,
    list_deliveries,
    list_webhooks,
    subscriptions,
)

P = ParamSpec("P")
T = TypeVar("T")


class WebhookQueries:
    """The webhook methods of `SqliteStore` and `PostgresStore` (SQL once).

    The API's calls run as the store's other cold calls (`_run`). The delivery
    worker's (`fan_out` to `prune_deliveries`) run where they cost the chat
    least (`_worker_run`): on PostgreSQL as the others (on the event loop, in
    asyncpg's greenlet); on SQLite on the event loop too, on a connection of
    their own that never waits for the write lock (busy_timeout 0) and commits
    as the writer does (synchronous=NORMAL), when the store's writer runs there
    too: a worker thread would hold the GIL against the loop (see
    `sqlite/on_loop.py`), and the loop's own writer is never mid-transaction
    when the worker runs. A locked database fails the step with
    `StoreUnavailable`; the worker tries again later. With synchronous=FULL
    (a commit waits for the disk) they run in a thread, as the writer does.
    """

    _worker_engine: Engine | None = None
    # seconds the worker's steps have held the event loop (what its pacing charges it for:
    # the chat's work between its steps is the chat's)
    worker_busy: float = 0.0

    async def _run(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        raise NotImplementedError

    @property
    def _backend(self) -> Any:
        return self.backend  # type: ignore[attr-defined]  # both stores have one

    @property
    def subscriptions(self) -> Subscriptions:
        """The events this node's writer writes (refreshed by `refresh_subscriptions`)."""
        outbox: Outbox = self._backend.outbox  # the batches' outbox (`outbox.py`)
        return outbox.subscriptions

    def _loop_engine(self) -> Engine | None:
        """The worker's own connection, if its steps run on the loop (see the class)."""
        backend = self._backend
        path = getattr(backend, "path", None)  # a SQLite file (PostgreSQL's backend has none)
        if not isinstance(path, str) or getattr(backend, "synchronous", "") != "NORMAL":
            return None
        if self._worker_engine is None:
            engine = create_engine(URL.create("sqlite", database=path), hide_parameters=True)
            event.listen(engine, "connect", _never_wait)
            self._worker_engine = engine
        return self._worker_engine

    async def _worker_run(
        self,
        fn: Callable[Concatenate[Connection, P], Steps[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run the worker's `fn`; on the loop, the loop runs other work at each of its steps."""
        engine = self._loop_engine()
        if engine is None:

            def whole(conn: Connection) -> T:
                return drain(fn(conn, *args, **kwargs))

            began = time.perf_counter()
            try:
                return await self._run(whole)
            finally:  # elsewhere than on the loop: counted whole, to be safe
                self.worker_busy += time.perf_counter() - began
        try:
            with engine.connect() as conn:
                steps = fn(conn, *args, **kwargs)
                while True:
                    began = time.perf_counter()
                    try:
                        next(steps)
                    except StopIteration as stop:
                        result: T = stop.value
                        return result
                    finally:
                        self.worker_busy += time.perf_counter() - began
                    await asyncio.sleep(0)
        except (sqlite3.Error, SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def close_worker(self) -> None:
        """Close the delivery worker's connection (the worker has stopped)."""
        engine, self._worker_engine = self._worker_engine, None
        if engine is not None:
            engine.dispose()

    async def refresh_subscriptions(self) -> frozenset[str]:
        """Read the webhooks' events into `subscriptions`; the events now subscribed."""
        self.subscriptions.set(await self._run(subscriptions))
        return self.subscriptions.events

    async def create_webhook(self, hook: Webhook) -> Webhook:
        return await self._run(create_webhook, hook)

    async def get_webhook(self, hook_id: str) -> Webhook | None:
        return await self._run(get_webhook, hook_id)

    async def list_webhooks(self, after: str | None, limit: int) -> list[Webhook]:
        return await self._run(list_webhooks, after, limit)

    async def delete_webhook(self, hook_id: str) -> bool:
        return await self._run(delete_webhook, hook_id)

    async def list_deliveries(
        self, hook_id: str, after: str | None, limit: int, status: Status | None = None
    ) -> list[Delivery]:
        return await self._run(list_deliveries, hook_id, after, limit, status)

    async def fan_out(self, new_id: Callable[[], str], now: float, max_events: int) -> int:
        return await self._worker_run(fan_out_steps, new_id, now, max_events)

    async def due_deliveries(
        self, now: float, limit: int, busy: Sequence[str] = ()
    ) -> list[DueDelivery]:
        return await self._worker_run(_one_step(due), now, limit, busy)

    async def record_deliveries(self, outcomes: Sequence[Outcome]) -> None:
        await self._worker_run(_one_step(record), outcomes)

    async def repair_deliveries(self, now: float) -> int:
        return await self._worker_run(_one_step(repair), now)

    async def prune_deliveries(self, before: float, limit: int = PRUNE_ROWS) -> int:
        return await self._worker_run(_one_step(prune), before, limit)


def _one_step(
    fn: Callable[Concatenate[Connection, P], T],
) -> Callable[Concatenate[Connection, P], Steps[T]]:
    """`fn` (short: one or two statements) as steps, of one step."""

    def steps(conn: Connection, /, *args: P.args, **kwargs: P.kwargs) -> Steps[T]:
        return fn(conn, *args, **kwargs)
        yield  # a generator, that never pauses

    return steps


def _never_wait(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")  # as the writer's: no fsync per commit
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")  # the store's checkpointer does them
    dbapi_connection.execute("PRAGMA foreign_keys=ON")
