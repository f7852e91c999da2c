"""The SQLite store: `SqliteStore` (`store.py`) and what it is made of.

* `backend.py`: the SQL of the write path, on the writer's `sqlite3` connection;
* `on_loop.py`: that writer run on the event loop (synchronous=NORMAL);
* `checkpoints.py` / `checkpointer.py`: how the WAL gets into the database.
"""

from __future__ import annotations

from kefu.store.sqlite.backend import SqliteBackend, sqlite_path
from kefu.store.sqlite.store import SqliteStore

__all__ = ["SqliteBackend", "SqliteStore", "sqlite_path"]
