"""The admin side's records on every backend: departures from the queue, listings, the
statistics' rows and retention's purge batches (`store/record_queries.py`).

A scripted history with known times (seconds since the epoch, small numbers)
is written through the writer as the desk writes it, then read back.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kefu.core.commands import CloseConversation, Dequeue, Enqueue, OpenConversation
from kefu.core.model import CloseReason
from kefu.store.base import Appended, NewMessage, Store
from kefu.store.records import ConversationFilter, ConversationState, Purged, Spread

from .conftest import ALICE, BOB, CAROL, DAVE


async def put(store: Store, mid: str, cid: str, sender: str, receiver: str, at: float) -> None:
    payload = json.dumps({"text": f"{mid} from {sender}"}).encode()
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    store.append(
        NewMessage(mid, cid, "message_text", sender, receiver, payload, None, at), done.set_result
    )
    assert isinstance(await done, Appended)


async def history(store: Store) -> None:
    """alice waits 5 s, is served by bob and rates 4; carol leaves, comes back, waits 30 s."""
    store.write(Enqueue(ALICE.id, 100.0))
    store.write(Enqueue(CAROL.id, 101.0))
    store.write(Dequeue(ALICE.id, served=True, left_at=105.0))
    store.write(OpenConversation("c1", ALICE.id, BOB.id, 105.0, 100.0))
    store.write(Dequeue(CAROL.id, served=False, left_at=110.0))
    store.write(Dequeue(CAROL.id, served=False, left_at=111.0))  # again: no entry, no exit
    await store.flush()
    await put(store, "m1", "c1", ALICE.id, BOB.id, 106.0)
    await put(store, "m2", "c1", BOB.id, ALICE.id, 108.0)  # bob's first reply: 3 s
    await put(store, "m3", "c1", BOB.id, ALICE.id, 109.0)
    store.write(CloseConversation("c1", CloseReason.RATED, 120.0, 4))
    store.write(Enqueue(CAROL.id, 200.0))
    store.write(Dequeue(CAROL.id, served=True, left_at=230.0))
    store.write(OpenConversation("c2", CAROL.id, DAVE.id, 230.0, 200.0))
    store.write(Enqueue(ALICE.id, 300.0))
    store.write(Dequeue(DAVE.id))  # no exit recorded without left_at (and no entry anyway)
    await store.flush()


async def test_departures_listings_and_transcripts(store: Store, people: Any, harness: Any) -> None:
    await history(store)
    assert harness.count("queue_exits") == 3

    everything = ConversationFilter()
    listed = await store.list_conversations(everything, None, 10)
    assert [c.id for c in listed] == ["c2", "c1"]  # newest first
    c2, c1 = listed
    assert (c2.state, c2.user, c2.waiter, c2.queued_at, c2.opened_at) == (
        ConversationState.OPEN,
        CAROL.profile(),
        DAVE.profile(),
        200.0,
        230.0,
    )
    assert (c1.state, c1.closed_at, c1.close_reason, c1.rate) == (
        ConversationState.CLOSED,
        120.0,
        "rated",
        4,
    )
    oldest = await store.list_conversations(everything, None, 10, oldest_first=True)
    assert [c.id for c in oldest] == ["c1", "c2"]
    # pages: after the first one, by (opened_at µs, id)
    assert [c.id for c in await store.list_conversations(everything, None, 1)] == ["c2"]
    assert [c.id for c in await store.list_conversations(everything, (230_000_000, "c2"), 1)] == [
        "c1"
    ]
    assert await store.list_conversations(everything, (105_000_000, "c1"), 5) == []

    # filters
    def ids(records: list[Any]) -> list[str]:
        return [r.id for r in records]

    closed = ConversationFilter(state=ConversationState.CLOSED)
    assert ids(await store.list_conversations(closed, None, 10)) == ["c1"]
    only_queued = ConversationFilter(state=ConversationState.QUEUED)
    assert await store.list_conversations(only_queued, None, 10) == []
    opened = ConversationFilter(state=ConversationState.OPEN)
    assert ids(await store.list_conversations(opened, None, 10)) == ["c2"]
    assert ids(await store.list_conversations(ConversationFilter(waiter_id=BOB.id), None, 10)) == [
        "c1"
    ]
    by_carol = ConversationFilter(user_id=CAROL.id)
    assert ids(await store.list_conversations(by_carol, None, 10)) == ["c2"]
    early = ConversationFilter(since=105.0, until=230.0)  # since <= opened_at < until
    assert ids(await store.list_conversations(early, None, 10)) == ["c1"]

    # the queue: alice, queued again at 300
    (queued,) = await store.list_queued(everything, None, 10)
    assert (queued.user, queued.queued_at) == (ALICE.profile(), 300.0)
    assert await store.list_queued(ConversationFilter(waiter_id=BOB.id), None, 10) == []
    assert await store.list_queued(ConversationFilter(until=300.0), None, 10) == []
    assert await store.list_queued(everything, (300_000_000, queued.seq), 10) == []

    # one conversation, its transcript
    detail = await store.get_conversation("c1")
    assert detail is not None and detail.messages == 3 and detail.user == ALICE.profile()
    assert await store.get_conversation("nope") is None
    msgs = await store.conversation_messages("c1", None, 10)
    assert [(m.id, m.sender, m.created, m.payload) for m in msgs] == [
        ("m1", ALICE.profile(), 106.0, {"text": "m1 from u-alice"}),
        ("m2", BOB.profile(), 108.0, {"text": "m2 from w-bob"}),
        ("m3", BOB.profile(), 109.0, {"text": "m3 from w-bob"}),
    ]
    assert [m.id for m in await store.conversation_messages("c1", "m1", 1)] == ["m2"]


async def test_period_stats(store: Store, people: Any) -> None:
    await history(store)
    stats = await store.period_stats(0.0, 1000.0)
    assert (stats.conversations, stats.served, stats.left) == (2, 2, 1)
    # waits 5 and 30: the nearest-rank p50 is the first, p90 the second
    assert stats.waits == Spread(count=2, mean=17.5, p50=5.0, p90=30.0)
    assert stats.first_replies == Spread(1, 3.0, 3.0, 3.0)  # c2 has no message from dave
    assert stats.handling == Spread(1, 15.0, 15.0, 15.0)  # c2 is open
    assert stats.ratings == {4: 1}
    later = await store.period_stats(150.0, 1000.0)  # c2 and carol's second wait only
    assert (later.conversations, later.served, later.left) == (1, 1, 0)
    assert later.waits == Spread(1, 30.0, 30.0, 30.0)
    assert (later.first_replies, later.handling, later.ratings) == (Spread(), Spread(), {})
    nothing = await store.period_stats(1000.0, 2000.0)
    assert (nothing.conversations, nothing.served, nothing.waits) == (0, 0, Spread())
    # a century: nothing is read into memory, so any length is fine
    assert (await store.period_stats(0.0, 100 * 365 * 86400.0)) == stats


async def test_purge_batches(store: Store, people: Any, harness: Any) -> None:
    await history(store)
    # before 150: c1 (closed at 120, 3 messages) and the two departures at 105 and 110;
    # c2 is open, carol's departure at 230 is newer
    small = {"conversations_max": 1, "messages_max": 2}
    assert await store.purge_batch(150.0, **small) == Purged(messages=2)
    assert await store.purge_batch(150.0, **small) == Purged(conversations=1, messages=1)
    assert await store.purge_batch(150.0, **small) == Purged(queue_exits=2)
    assert await store.purge_batch(150.0, **small) == Purged()
    assert [c.id for c in await store.list_conversations(ConversationFilter(), None, 10)] == ["c2"]
    assert (harness.count("messages"), harness.count("queue_exits")) == (0, 1)
    # an open conversation stays however old it is
    assert await store.purge_batch(10_000.0) == Purged(queue_exits=1)
    assert await store.get_conversation("c2") is not None
