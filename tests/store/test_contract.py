"""The Store contract: every implementation must pass this suite (see conftest.harness)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from functools import partial
from typing import Any

import pytest

from kefu.core.commands import CloseConversation, Dequeue, Enqueue, OpenConversation
from kefu.core.model import AccountKind, CloseReason, Role
from kefu.ids import IdGenerator, id_time
from kefu.store.base import (
    Account,
    AccountExists,
    Appended,
    NewMessage,
    Store,
    StoreUnavailable,
)

from .conftest import ALICE, BOB, CAROL, DAVE, SqliteHarness


def message(
    new_id: IdGenerator,
    cid: str,
    sender: str,
    receiver: str,
    text: str,
    op_id: str | None = None,
    type_: str = "message_text",
) -> NewMessage:
    mid = new_id()
    payload = json.dumps({"text": text}, separators=(",", ":")).encode()
    return NewMessage(mid, cid, type_, sender, receiver, payload, op_id, id_time(mid))


def append_all(store: Store, messages: list[NewMessage]) -> list[asyncio.Future[Any]]:
    """Queue every message without yielding to the loop; futures get what `done` got."""
    loop = asyncio.get_running_loop()
    futures = []
    for m in messages:
        fut: asyncio.Future[Any] = loop.create_future()
        store.append(m, fut.set_result)
        futures.append(fut)
    return futures


async def appended(store: Store, m: NewMessage) -> Appended:
    (result,) = await asyncio.gather(*append_all(store, [m]))
    assert isinstance(result, Appended), result
    return result


async def open_conversation(
    store: Store, new_id: IdGenerator, user: str, waiter: str, at: float | None = None
) -> str:
    cid = new_id()
    store.write(OpenConversation(cid, user, waiter, id_time(cid) if at is None else at))
    await store.flush()
    return cid


# -- accounts ---------------------------------------------------------------
async def test_accounts_crud(store: Store) -> None:
    assert await store.create_account(ALICE) == ALICE
    assert await store.get_account(ALICE.id) == ALICE
    assert await store.get_account_by_username("alice") == ALICE
    assert await store.get_account("nobody") is None
    assert await store.get_account_by_username("nobody") is None
    with pytest.raises(AccountExists):
        await store.create_account(Account(id="other", username="alice", role=Role.USER))
    with pytest.raises(AccountExists):
        await store.create_account(Account(id=ALICE.id, username="alice2", role=Role.USER))
    await store.create_account(BOB)
    assert await store.get_account(BOB.id) == BOB  # the password hash is kept


def external(id_: str, username: str, sub: str | None = None, **fields: Any) -> Account:
    return Account(
        id=id_,
        username=username,
        role=Role(fields.pop("role", "user")),
        kind=AccountKind.EXTERNAL,
        external_id=sub or id_,
        **fields,
    )


async def test_external_accounts_live_in_their_own_namespace(store: Store) -> None:
    await store.create_account(ALICE)
    # a host application's user may share a local account's username
    eve = external("ext-1", "alice", nickname="Eve")
    await store.upsert_account(eve)
    assert await store.get_external_account("ext-1") == eve
    assert await store.get_account_by_username("alice", AccountKind.EXTERNAL) == eve
    assert await store.get_account_by_username("alice") == ALICE
    assert await store.get_external_account(ALICE.id) is None  # never a local account
    # updated by its external id; its kefu id stays what it was
    await store.upsert_account(external("another-id", "eve", "ext-1", role=Role.WAITER, avatar="e"))
    assert await store.get_external_account("ext-1") == external(
        "ext-1", "eve", role=Role.WAITER, avatar="e", nickname=None
    )
    # an external account can take neither a local account's id nor another's username
    with pytest.raises(AccountExists):
        await store.upsert_account(external(ALICE.id, "mallory", "ext-2"))
    assert await store.get_account(ALICE.id) == ALICE
    await store.upsert_account(external("ext-3", "carol"))
    with pytest.raises(AccountExists):
        await store.upsert_account(external("ext-4", "carol"))
    with pytest.raises(ValueError):
        await store.upsert_account(BOB)  # local accounts are never upserted from tokens


# -- the write path -----------------------------------------------------------
async def test_done_after_commit(
    store: Store, harness: SqliteHarness, people: Any, new_id: IdGenerator
) -> None:
    cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
    m = message(new_id, cid, ALICE.id, BOB.id, "hi", op_id="op-1")
    seen: list[Any] = []

    def done(result: Any) -> None:
        # runs on the loop after the commit: another connection sees the row
        seen.append((result, harness.count("messages")))

    store.append(m, done)
    await store.flush()
    assert seen == [(Appended(id=m.id, created=m.created), 1)]


async def test_batches_group_commit(store: Store, people: Any, new_id: IdGenerator) -> None:
    cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
    stats = store.writer.stats  # type: ignore[attr-defined]
    commits = stats.commits
    msgs = [message(new_id, cid, ALICE.id, BOB.id, f"m{i}") for i in range(2000)]
    results = await asyncio.gather(*append_all(store, msgs))
    assert [r.id for r in results] == [m.id for m in msgs]
    assert stats.commits - commits < len(msgs) // 10
    assert stats.largest > 100
    assert len(await store.messages_after(cid, "", limit=5000)) == 2000


async def test_done_in_submission_order(store: Store, people: Any, new_id: IdGenerator) -> None:
    cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
    order: list[int] = []

    def record(i: int, _result: object) -> None:
        order.append(i)

    for i in range(300):
        m = message(new_id, cid, ALICE.id, BOB.id, str(i), op_id=f"op{i % 250}")
        store.append(m, partial(record, i))
        if i % 37 == 0:
            store.write(Enqueue(CAROL.id, time.time()))
            await asyncio.sleep(0)
    await store.flush()
    assert order == list(range(300))


async def test_idempotent_retry(store: Store, people: Any, new_id: IdGenerator) -> None:
    cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
    first = message(new_id, cid, ALICE.id, BOB.id, "hello", op_id="op-1")
    stored = await appended(store, first)
    assert stored == Appended(id=first.id, created=first.created)
    retry = message(new_id, cid, ALICE.id, BOB.id, "hello", op_id="op-1")
    again = await appended(store, retry)
    assert again.duplicate and not again.conflict
    assert again.id == first.id
    assert again.created == pytest.approx(first.created, abs=1e-6)
    # a retry in the same batch as the original
    m1 = message(new_id, cid, ALICE.id, BOB.id, "x", op_id="op-2")
    m2 = message(new_id, cid, ALICE.id, BOB.id, "x", op_id="op-2")
    r1, r2 = await asyncio.gather(*append_all(store, [m1, m2]))
    assert not r1.duplicate and r2.duplicate and r2.id == m1.id
    # the same op_id from another sender is another message
    other = message(new_id, cid, BOB.id, ALICE.id, "hello", op_id="op-1")
    assert not (await appended(store, other)).duplicate
    assert [m.id for m in await store.messages_after(cid, "")] == [first.id, m1.id, other.id]


async def test_conflict(store: Store, people: Any, new_id: IdGenerator) -> None:
    cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
    first = message(new_id, cid, ALICE.id, BOB.id, "hello", op_id="op-1")
    await appended(store, first)
    for changed in (
        message(new_id, cid, ALICE.id, BOB.id, "other text", op_id="op-1"),
        message(new_id, cid, ALICE.id, BOB.id, "hello", op_id="op-1", type_="message_image"),
    ):
        result = await appended(store, changed)
        assert result.conflict and not result.duplicate and result.id == first.id
    stored = await store.messages_after(cid, "")
    assert [(m.id, m.payload) for m in stored] == [(first.id, {"text": "hello"})]


async def test_retries_and_conflicts_mixed_with_records_in_one_batch(
    store: Store, people: Any, new_id: IdGenerator
) -> None:
    cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
    kept = message(new_id, cid, ALICE.id, BOB.id, "kept", op_id="op-1")
    taken = message(new_id, cid, ALICE.id, BOB.id, "taken", op_id="op-2")
    await asyncio.gather(*append_all(store, [kept, taken]))

    cid2 = new_id()
    fresh = message(new_id, cid, ALICE.id, BOB.id, "fresh", op_id="op-3")
    retry = message(new_id, cid, ALICE.id, BOB.id, "kept", op_id="op-1")
    clash = message(new_id, cid, ALICE.id, BOB.id, "not taken", op_id="op-2")
    no_op = message(new_id, cid, BOB.id, ALICE.id, "no op_id")
    first = append_all(store, [fresh, retry, clash, no_op])
    store.write(OpenConversation(cid2, CAROL.id, DAVE.id, id_time(cid2)))
    in_new = message(new_id, cid2, CAROL.id, DAVE.id, "same op_id, other sender", op_id="op-1")
    again = message(new_id, cid, ALICE.id, BOB.id, "fresh", op_id="op-3")
    changed = message(new_id, cid, ALICE.id, BOB.id, "fresh, changed", op_id="op-3")
    no_op2 = message(new_id, cid, BOB.id, ALICE.id, "no op_id")
    second = append_all(store, [in_new, again, changed, no_op2])
    results = await asyncio.gather(*first, *second)

    assert [(r.id, r.duplicate, r.conflict) for r in results] == [
        (fresh.id, False, False),
        (kept.id, True, False),
        (taken.id, False, True),
        (no_op.id, False, False),
        (in_new.id, False, False),
        (fresh.id, True, False),
        (fresh.id, False, True),
        (no_op2.id, False, False),
    ]
    stored_as = [fresh, kept, taken, no_op, in_new, fresh, fresh, no_op2]
    assert [r.created for r in results] == pytest.approx([m.created for m in stored_as], abs=1e-6)
    assert [m.id for m in await store.messages_after(cid, "")] == [
        kept.id,
        taken.id,
        fresh.id,
        no_op.id,
        no_op2.id,
    ]
    assert [m.id for m in await store.messages_after(cid2, "")] == [in_new.id]


async def test_item_error_fails_only_that_message(
    store: Store, people: Any, new_id: IdGenerator
) -> None:
    cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
    good1 = message(new_id, cid, ALICE.id, BOB.id, "a")
    orphan = message(new_id, "no-such-conversation", ALICE.id, BOB.id, "b")
    good2 = message(new_id, cid, ALICE.id, BOB.id, "c")
    r1, r2, r3 = await asyncio.gather(*append_all(store, [good1, orphan, good2]))
    assert isinstance(r2, StoreUnavailable)
    assert r1.id == good1.id and r3.id == good2.id
    assert [m.id for m in await store.messages_after(cid, "")] == [good1.id, good2.id]


async def test_failed_commit_then_recovery(harness: SqliteHarness, new_id: IdGenerator) -> None:
    store = harness.make(busy_timeout=0.05)
    await store.start()
    try:
        for account in (ALICE, BOB, CAROL):
            await store.create_account(account)
        cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
        with harness.block_writes():
            m = message(new_id, cid, ALICE.id, BOB.id, "lost", op_id="op-1")
            (result,) = await asyncio.gather(*append_all(store, [m]))
            store.write(Enqueue(CAROL.id, 100.0))  # retried until the lock goes
            flushed = asyncio.ensure_future(store.flush())
            await asyncio.sleep(0.1)
            assert not flushed.done()
        assert isinstance(result, StoreUnavailable)
        await flushed
        assert store.writer.stats.failures >= 1
        assert store.writer.stats.retried >= 1
        assert [e.user.id for e in (await store.load_open_state()).queue] == [CAROL.id]
        retry = await appended(store, message(new_id, cid, ALICE.id, BOB.id, "lost", "op-1"))
        assert not retry.duplicate  # the first try was never stored
        assert harness.count("messages") == 1
    finally:
        await store.close()


async def test_append_after_close(harness: SqliteHarness, new_id: IdGenerator) -> None:
    store = harness.make()
    await store.start()
    await store.close()
    (result,) = await asyncio.gather(*append_all(store, [message(new_id, "c", "a", "b", "x")]))
    assert isinstance(result, StoreUnavailable)
    with pytest.raises(StoreUnavailable):
        store.write(Dequeue("a"))


# -- lifecycle --------------------------------------------------------------------
async def test_lifecycle_records(store: Store, people: Any, new_id: IdGenerator) -> None:
    store.write(Enqueue(ALICE.id, 10.0))
    store.write(Enqueue(CAROL.id, 11.0))
    store.write(Dequeue(ALICE.id))
    cid = new_id()
    store.write(OpenConversation(cid, ALICE.id, BOB.id, 12.0))
    await store.flush()
    state = await store.load_open_state()
    assert [(e.user, e.queued_at) for e in state.queue] == [(CAROL.profile(), 11.0)]
    ((conv, user, waiter),) = state.conversations
    assert (conv.id, conv.opened, conv.closed, user, waiter) == (
        cid,
        12.0,
        None,
        ALICE.profile(),
        BOB.profile(),
    )

    store.write(CloseConversation(cid, CloseReason.USER_LEFT, 13.5, rate=4))
    store.write(CloseConversation(cid, CloseReason.USER_IDLE, 14.0))  # already closed: no-op
    await store.flush()
    assert (await store.load_open_state()).conversations == []
    latest = await store.latest_conversation(ALICE.id)
    assert latest is not None
    assert (latest.id, latest.closed, latest.close_reason, latest.rate) == (
        cid,
        13.5,
        "user_left",
        4,
    )
    assert await store.latest_conversation(CAROL.id) is None


async def test_rate(store: Store, people: Any, new_id: IdGenerator) -> None:
    cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
    assert await store.rate(cid, 5) is True
    assert await store.rate(cid, 1) is False
    assert (await store.latest_conversation(ALICE.id)).rate == 5  # type: ignore[union-attr]
    assert await store.rate("missing", 3) is False
    # ordered after the queued open, without a flush in between
    cid2 = new_id()
    store.write(OpenConversation(cid2, CAROL.id, BOB.id, id_time(cid2)))
    assert await store.rate(cid2, 2) is True
    store.write(CloseConversation(cid2, CloseReason.RATED, time.time(), rate=4))
    await store.flush()
    assert (await store.latest_conversation(CAROL.id)).rate == 2  # type: ignore[union-attr]


async def test_load_open_state_queue_order(store: Store, people: Any) -> None:
    store.write(Enqueue(BOB.id, 20.0))
    store.write(Enqueue(ALICE.id, 5.0))
    store.write(Enqueue(CAROL.id, 20.0))  # same time as bob: insertion order
    store.write(Enqueue(DAVE.id, 20.0))
    store.write(Enqueue(BOB.id, 20.0))  # re-enqueued: goes behind carol and dave
    await store.flush()
    queue = (await store.load_open_state()).queue
    assert [e.user.id for e in queue] == [ALICE.id, CAROL.id, DAVE.id, BOB.id]
    assert [e.queued_at for e in queue] == [5.0, 20.0, 20.0, 20.0]


# -- reads ------------------------------------------------------------------------
async def test_history_newest_first_and_paging(
    store: Store, people: Any, new_id: IdGenerator
) -> None:
    c1 = await open_conversation(store, new_id, ALICE.id, BOB.id)
    c2 = await open_conversation(store, new_id, CAROL.id, BOB.id)
    mine = []
    for i in range(7):
        a = message(new_id, c1, ALICE.id, BOB.id, f"a{i}")
        b = message(new_id, c1, BOB.id, ALICE.id, f"b{i}")
        other = message(new_id, c2, CAROL.id, BOB.id, f"c{i}")
        append_all(store, [a, b, other])
        mine += [a, b]
    await store.flush()
    everything = await store.history(ALICE.id)
    assert [h.id for h in everything] == [m.id for m in reversed(mine)]
    newest = everything[0]
    assert (newest.type, newest.payload, newest.sender, newest.receiver) == (
        "message_text",
        {"text": "b6"},
        BOB.profile(),
        ALICE.profile(),
    )
    assert newest.created == pytest.approx(mine[-1].created)

    pages, before = [], None
    while page := await store.history(ALICE.id, before=before, limit=3):
        pages.append(page)
        before = page[-1].id
    assert [len(p) for p in pages] == [3, 3, 3, 3, 2]
    assert [h.id for p in pages for h in p] == [h.id for h in everything]
    assert len(await store.history(CAROL.id, limit=1000)) == 7
    assert await store.history("nobody") == []


async def test_history_spans_the_users_conversations(
    store: Store, people: Any, new_id: IdGenerator
) -> None:
    """A user's history merges all its conversations, whoever the waiter, newest first."""
    convs = [
        (await open_conversation(store, new_id, ALICE.id, waiter), waiter)
        for waiter in (BOB.id, DAVE.id, BOB.id, DAVE.id)
    ]
    theirs = await open_conversation(store, new_id, CAROL.id, BOB.id)
    mine, others = [], []
    for i in range(40):
        # a block per conversation first, then all four interleaved (ids from one clock)
        cid, waiter = convs[i // 5] if i < 20 else convs[i * 3 % 4]
        sender, receiver = (ALICE.id, waiter) if i % 3 else (waiter, ALICE.id)
        m = message(new_id, cid, sender, receiver, f"m{i}", op_id=f"op{i}")
        other = message(new_id, theirs, CAROL.id, BOB.id, f"c{i}", op_id=f"op{i}")
        append_all(store, [m, other])
        mine.append(m)
        others.append(other)
        if i % 8 == 7:
            await store.flush()
    await store.flush()
    newest_first = [m.id for m in reversed(mine)]
    assert [h.id for h in await store.history(ALICE.id, limit=1000)] == newest_first
    assert [h.id for h in await store.history(ALICE.id)] == newest_first  # limit 100

    pages, before = [], None
    while page := await store.history(ALICE.id, before=before, limit=7):
        pages.append([h.id for h in page])
        before = page[-1].id
    assert [len(p) for p in pages] == [7, 7, 7, 7, 7, 5]
    assert [i for p in pages for i in p] == newest_first
    # `before` need not be one of the user's messages
    middle = others[25].id
    older = [m.id for m in reversed(mine) if m.id < middle]
    assert [h.id for h in await store.history(ALICE.id, before=middle, limit=4)] == older[:4]
    # the waiter's side is in the history, with both profiles
    entry = next(h for h in await store.history(ALICE.id) if h.id == mine[3].id)
    assert (entry.sender, entry.receiver, entry.payload) == (
        BOB.profile(),
        ALICE.profile(),
        {"text": "m3"},
    )
    assert [h.id for h in await store.history(CAROL.id, limit=1000)] == [
        m.id for m in reversed(others)
    ]
    # a waiter is never the user of a conversation: its own history is empty
    assert await store.history(BOB.id) == []


async def test_sessions(store: Store, people: Any, new_id: IdGenerator) -> None:
    old = await open_conversation(store, new_id, ALICE.id, BOB.id, at=100.0)
    await appended(store, message(new_id, old, ALICE.id, BOB.id, "old"))
    quiet = await open_conversation(store, new_id, CAROL.id, BOB.id, at=150.0)
    new = await open_conversation(store, new_id, ALICE.id, BOB.id, at=200.0)
    await appended(store, message(new_id, new, ALICE.id, BOB.id, "first"))
    last = message(new_id, new, BOB.id, ALICE.id, "last")
    await appended(store, last)
    await open_conversation(store, new_id, CAROL.id, DAVE.id, at=300.0)  # another waiter

    sessions = await store.sessions(BOB.id)
    assert [(s.conversation_id, s.user, s.waiter, s.created) for s in sessions] == [
        (new, ALICE.profile(), BOB.profile(), 200.0),
        (quiet, CAROL.profile(), BOB.profile(), 150.0),
    ]
    assert sessions[0].latest is not None
    assert (sessions[0].latest.id, sessions[0].latest.payload, sessions[0].latest.sender) == (
        last.id,
        {"text": "last"},
        BOB.profile(),
    )
    assert sessions[1].latest is None
    assert [s.conversation_id for s in await store.sessions(BOB.id, limit=1)] == [new]
    assert await store.sessions("nobody") == []


async def test_messages_after(store: Store, people: Any, new_id: IdGenerator) -> None:
    cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
    other = await open_conversation(store, new_id, CAROL.id, BOB.id)
    msgs = [message(new_id, cid, ALICE.id, BOB.id, str(i), op_id=f"o{i}") for i in range(5)]
    append_all(store, [*msgs, message(new_id, other, CAROL.id, BOB.id, "x")])
    await store.flush()
    after = await store.messages_after(cid, msgs[1].id)
    assert [m.id for m in after] == [m.id for m in msgs[2:]]
    m = after[0]
    assert (m.conversation_id, m.type, m.sender_id, m.receiver_id, m.payload, m.op_id) == (
        cid,
        "message_text",
        ALICE.id,
        BOB.id,
        {"text": "2"},
        "o2",
    )
    assert m.created == pytest.approx(msgs[2].created)
    assert [m.id for m in await store.messages_after(cid, "", limit=2)] == [msgs[0].id, msgs[1].id]
    assert await store.messages_after(cid, msgs[-1].id) == []


async def test_survives_close_and_reopen(harness: SqliteHarness, new_id: IdGenerator) -> None:
    store = harness.make()
    await store.start()
    for account in (ALICE, BOB):
        await store.create_account(account)
    cid = await open_conversation(store, new_id, ALICE.id, BOB.id)
    m = message(new_id, cid, ALICE.id, BOB.id, "kept", op_id="op-1")
    append_all(store, [m])
    store.write(Enqueue(ALICE.id, 42.0))
    await store.close()  # commits what is queued

    store = harness.make(synchronous="FULL")
    await store.start()
    try:
        assert await store.get_account(ALICE.id) == ALICE
        assert [h.id for h in await store.history(ALICE.id)] == [m.id]
        state = await store.load_open_state()
        assert [e.user.id for e in state.queue] == [ALICE.id]
        assert [c.id for c, _, _ in state.conversations] == [cid]
        assert (
            await appended(store, message(new_id, cid, ALICE.id, BOB.id, "kept", "op-1"))
        ).duplicate
    finally:
        await store.close()


async def test_many_producers(store: Store, people: Any, new_id: IdGenerator) -> None:
    cid = await open_conversation(store, new_id, ALICE.id, BOB.id)

    async def producer(n: int) -> None:
        for i in range(20):
            r = await appended(
                store, message(new_id, cid, ALICE.id, BOB.id, f"{n}.{i}", op_id=f"{n}.{i}")
            )
            assert not r.duplicate

    await asyncio.gather(*(producer(n) for n in range(50)))
    assert len(await store.messages_after(cid, "", limit=5000)) == 1000


def test_unmigrated_database_is_refused(tmp_path: Any) -> None:
    from kefu.store.base import StoreError
    from kefu.store.sqlite import SqliteStore

    async def main() -> None:
        store = SqliteStore(f"sqlite:///{tmp_path / 'missing.db'}")
        with pytest.raises(StoreError, match="upgrade"):
            await store.start()
        empty = tmp_path / "empty.db"
        sqlite3.connect(empty).close()
        store = SqliteStore(f"sqlite:///{empty}")
        with pytest.raises(StoreError, match="not migrated"):
            await store.start()

    asyncio.run(main())
    assert not (tmp_path / "missing.db").exists()
