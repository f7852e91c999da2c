"""The on-loop SQLite writer leaves WAL checkpoints (and their fsyncs) to a thread."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from kefu.ids import IdGenerator
from kefu.store.migrate import upgrade
from kefu.store.sqlite import SqliteStore
from kefu.store.sqlite import checkpointer as sqlite_store

from .conftest import ALICE, BOB
from .test_contract import appended, message, open_conversation


async def test_checkpoints_copy_the_wal_into_the_database(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL", 0.05)
    db = tmp_path / "kefu.db"
    upgrade(f"sqlite:///{db}")
    store = SqliteStore(f"sqlite:///{db}")
    await store.start()
    try:
        assert store.inline  # synchronous=NORMAL: the writer runs on the loop
        new_id = IdGenerator(node=1)
        await store.create_account(ALICE)
        await store.create_account(BOB)
        cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
        before = os.path.getsize(db)
        for i in range(300):
            await appended(store, message(new_id, cid, ALICE.id, BOB.id, "x" * 200 + str(i)))
        # the writer's own connection never checkpoints (wal_autocheckpoint=0), so only
        # the background checkpointer can make the main file grow while the store is open
        for _ in range(100):
            if os.path.getsize(db) > before:
                break
            await asyncio.sleep(0.05)
        assert os.path.getsize(db) > before
    finally:
        await store.close()
    wal = Path(str(db) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # close() truncates the WAL
