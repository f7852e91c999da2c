"""Persistence behind one `Store` protocol; see `base.py`.

`open_store(settings)` picks the implementation from the database URL scheme
and imports it lazily, so the embedded default needs no PostgreSQL driver.
The returned store is not started: `await store.start()` (after
`kefu.store.migrate.upgrade(url)`), and `await store.close()` at shutdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kefu.store.base import (
    Account,
    AccountExists,
    AppendDone,
    Appended,
    Conversation,
    Fenced,
    HistoryEntry,
    LifecycleWrite,
    NewMessage,
    OpenState,
    QueueEntry,
    SessionEntry,
    Store,
    StoredMessage,
    StoreError,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from kefu.settings import Settings


def open_store(settings: Settings) -> Store:
    """A new, not yet started store for `settings.database_url`.

    `sqlite:///relative.db` / `sqlite:////abs.db`: `SqliteStore` with
    `settings.sqlite_synchronous`. `postgresql://` (any `+driver` is ignored):
    `PostgresStore` (asyncpg; needs kefu[cluster]).
    """
    url = settings.database_url
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        from kefu.store.sqlite import SqliteStore

        return SqliteStore(url, synchronous=settings.sqlite_synchronous)
    if scheme in ("postgresql", "postgres"):
        try:
            from kefu.store.postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StoreError(
                "PostgreSQL storage needs kefu[cluster] (pip install 'kefu[cluster]')"
            ) from exc
        return PostgresStore(url)
    raise ValueError(
        f"unsupported database URL scheme {scheme!r} (use sqlite:/// or postgresql://)"
    )


__all__ = [
    "Account",
    "AccountExists",
    "AppendDone",
    "Appended",
    "Conversation",
    "Fenced",
    "HistoryEntry",
    "LifecycleWrite",
    "NewMessage",
    "OpenState",
    "QueueEntry",
    "SessionEntry",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredMessage",
    "open_store",
]
