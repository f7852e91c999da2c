"""The webhook outbox and deliveries on every store: events written with their change, fanned
out in order, one delivery at a time per subject (`store/outbox.py`, `store/webhooks/`)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kefu.core.commands import CloseConversation, Dequeue, Enqueue, OpenConversation
from kefu.core.model import CloseReason
from kefu.ids import IdGenerator, id_time
from kefu.store.base import AccountUpdate, Appended, NewMessage, Store
from kefu.store.outbox import EVENTS, Outbox, Subscriptions
from kefu.store.webhooks import DueDelivery, Outcome, Webhook, WebhookQueries
from support.services import in_thread

from .conftest import ALICE, BOB, CAROL, DAVE, PostgresHarness, SqliteHarness

TABLES = ("webhook_deliveries", "webhook_outbox", "webhooks")


@pytest.fixture
async def hooks(
    store: Store, harness: SqliteHarness | PostgresHarness
) -> AsyncIterator[WebhookQueries]:
    assert isinstance(store, WebhookQueries)
    if isinstance(harness, PostgresHarness):  # one database for the session: start empty
        for table in TABLES:
            harness._sql(f"DELETE FROM {table}")
    yield store
    if isinstance(harness, PostgresHarness):
        for table in TABLES:
            harness._sql(f"DELETE FROM {table}")


async def subscribe(hooks: WebhookQueries, new_id: IdGenerator, *events: str) -> Webhook:
    hook = Webhook(new_id(), "https://example.com/hook", events, time.time(), "s" * 32)
    await hooks.create_webhook(hook)
    await hooks.refresh_subscriptions()
    return hook


def text(
    new_id: IdGenerator, cid: str, sender: str, receiver: str, body: str, op_id: str | None = None
) -> NewMessage:
    mid = new_id()
    payload = json.dumps({"text": body}).encode()
    return NewMessage(mid, cid, "message_text", sender, receiver, payload, op_id, id_time(mid))


async def send(store: Store, messages: list[NewMessage]) -> list[Any]:
    """Queue every message in one go (one batch), then wait for all of them."""
    loop = asyncio.get_running_loop()
    futures = []
    for m in messages:
        fut: asyncio.Future[Any] = loop.create_future()
        store.append(m, fut.set_result)
        futures.append(fut)
    return list(await asyncio.gather(*futures))


async def people(store: Store) -> None:
    for account in (ALICE, CAROL, BOB, DAVE):
        await store.create_account(account)


async def fan_out(hooks: WebhookQueries, new_id: IdGenerator) -> None:
    """Everything in the outbox, a few events at a time (long runs of messages in parts)."""
    while await hooks.fan_out(new_id, time.time(), 7):
        pass


def query(harness: Any, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` on the harness's database."""
    if isinstance(harness, PostgresHarness):

        async def run() -> list[tuple[Any, ...]]:
            conn = await harness._connect()
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        return in_thread(run)
    with sqlite3.connect(harness.path) as con:
        return con.execute(sql).fetchall()


def bodies(harness: Any, hook: Webhook) -> list[dict[str, Any]]:
    """The bodies of every delivery to `hook` not finished yet, in delivery order."""
    sql = f"SELECT body FROM webhook_deliveries WHERE webhook_id = '{hook.id}' ORDER BY seq"
    return [json.loads(row[0]) for row in query(harness, sql)]


async def test_nothing_is_written_without_a_webhook(
    store: Store, hooks: WebhookQueries, harness: Any, new_id: IdGenerator
) -> None:
    await people(store)
    cid = new_id()
    store.write(Enqueue(ALICE.id, 1.0))
    store.write(Dequeue(ALICE.id))
    store.write(OpenConversation(cid, ALICE.id, BOB.id, 2.0, 1.0))
    await send(store, [text(new_id, cid, ALICE.id, BOB.id, "hi")])
    store.write(CloseConversation(cid, CloseReason.USER_LEFT, 3.0, 5))
    await store.flush()
    await store.update_account(ALICE.id, AccountUpdate(nickname="Al"))
    assert harness.count("webhook_outbox") == 0
    assert hooks.subscriptions.events == frozenset()


async def test_the_lifecycle_and_messages_become_deliveries_in_order(
    store: Store, hooks: WebhookQueries, harness: Any, new_id: IdGenerator
) -> None:
    hook = await subscribe(hooks, new_id, "*")
    assert hooks.subscriptions.events == frozenset(EVENTS)
    await people(store)  # four account.created events
    c1, c2 = new_id(), new_id()
    store.write(Enqueue(ALICE.id, 10.0))
    store.write(Dequeue(ALICE.id))
    store.write(OpenConversation(c1, ALICE.id, BOB.id, 11.0, 10.0))
    sent = [text(new_id, c1, ALICE.id, BOB.id, f"m{i}", f"op{i}") for i in range(5)]
    resent = text(new_id, c1, ALICE.id, BOB.id, "m0", "op0")
    results = await send(store, [*sent, resent])  # the last one is a resend: no event
    assert results[-1].duplicate
    # a transfer: the switchboard closes c1 and opens c2 for it
    store.write(CloseConversation(c1, CloseReason.TRANSFERRED, 12.0))
    store.write(OpenConversation(c2, ALICE.id, DAVE.id, 12.0, 10.0, transferred_from=c1))
    store.write(CloseConversation(c2, CloseReason.RATED, 13.0, 4))
    store.write(CloseConversation(c2, CloseReason.USER_LEFT, 14.0))  # closed already: nothing
    await store.flush()
    assert await store.rate(c1, 5)  # a late rating
    assert not await store.rate(c1, 3)  # rated already: nothing

    await fan_out(hooks, new_id)
    got = bodies(harness, hook)
    alice = [b for b in got if b["event"].startswith(("conversation.", "message."))]
    assert [b["event"] for b in alice] == [
        "conversation.queued",
        "conversation.assigned",
        *["message.created"] * 5,
        "conversation.closed",
        "conversation.transferred",
        "conversation.assigned",
        "conversation.closed",
        "conversation.rated",
        "conversation.rated",
    ]
    assert sorted(b["data"]["id"] for b in got if b["event"] == "account.created") == sorted(
        a.id for a in (ALICE, CAROL, BOB, DAVE)
    )
    queued, assigned, first = alice[0]["data"], alice[1]["data"], alice[2]["data"]
    assert queued == {"user_id": ALICE.id, "queued_at": "1970-01-01T00:00:10.000000Z"}
    assert assigned == {
        "conversation_id": c1,
        "user_id": ALICE.id,
        "waiter_id": BOB.id,
        "opened_at": "1970-01-01T00:00:11.000000Z",
        "queued_at": "1970-01-01T00:00:10.000000Z",
    }
    assert first["payload"] == {"text": "m0"} and first["conversation_id"] == c1
    assert [b["data"]["id"] for b in alice[2:7]] == [m.id for m in sent]
    assert alice[7]["data"] | {"closed_at": "-"} == {
        "conversation_id": c1,
        "user_id": ALICE.id,
        "waiter_id": BOB.id,
        "reason": "transferred",
        "closed_at": "-",
        "rate": None,
    }
    transferred = alice[8]["data"]
    assert transferred["from_conversation_id"] == c1 and transferred["from_waiter_id"] == BOB.id
    assert transferred["conversation_id"] == c2 and transferred["waiter_id"] == DAVE.id
    assert alice[11]["data"]["conversation_id"] == c2 and alice[11]["data"]["rate"] == 4
    assert alice[12]["data"] == {
        "conversation_id": c1,
        "user_id": ALICE.id,
        "waiter_id": BOB.id,
        "rate": 5,
    }
    for b in got:  # the body's id is its delivery's
        assert set(b) == {"id", "event", "created_at", "data"}
    assert len({b["id"] for b in got}) == len(got)


async def test_a_batch_of_messages_is_one_outbox_row_and_only_when_subscribed(
    store: Store, hooks: WebhookQueries, harness: Any, new_id: IdGenerator
) -> None:
    await people(store)
    cid = new_id()
    store.write(OpenConversation(cid, ALICE.id, BOB.id, 1.0))
    closing = await subscribe(hooks, new_id, "conversation.closed")
    await send(store, [text(new_id, cid, ALICE.id, BOB.id, "not wanted") for _ in range(20)])
    assert harness.count("webhook_outbox") == 0
    everything = await subscribe(hooks, new_id, "message.created")
    await send(store, [text(new_id, cid, ALICE.id, BOB.id, f"{i}") for i in range(50)])
    assert 1 <= harness.count("webhook_outbox") < 5  # a row per batch, not per message
    await fan_out(hooks, new_id)
    assert harness.count("webhook_outbox") == 0
    got = bodies(harness, everything)
    assert [b["data"]["payload"]["text"] for b in got] == [str(i) for i in range(50)]
    assert await hooks.list_deliveries(closing.id, None, 100) == []


async def test_one_delivery_at_a_time_per_subject(
    store: Store, hooks: WebhookQueries, new_id: IdGenerator
) -> None:
    hook = await subscribe(hooks, new_id, "conversation.queued")
    await people(store)
    for at in (1.0, 2.0, 3.0):
        store.write(Enqueue(ALICE.id, at))
    store.write(Enqueue(CAROL.id, 4.0))
    await store.flush()
    await fan_out(hooks, new_id)
    now = time.time() + 1
    due = await hooks.due_deliveries(now, 100)
    assert sorted(d.subject for d in due) == [ALICE.id, CAROL.id]  # one each
    (first,) = [d for d in due if d.subject == ALICE.id]
    assert json.loads(first.body)["data"]["queued_at"].endswith(":01.000000Z")
    assert await hooks.due_deliveries(now, 100, busy=[first.id]) == [
        d for d in due if d.subject == CAROL.id
    ]

    # a failed attempt keeps its place; the next waits
    await hooks.record_deliveries([Outcome(first, False, now, 500, None, now + 60)])
    assert [d.subject for d in await hooks.due_deliveries(now, 100)] == [CAROL.id]
    later = await hooks.due_deliveries(now + 61, 100)
    again = next(d for d in later if d.subject == ALICE.id)
    assert again.id == first.id and again.attempts == 1

    # delivered: the next of the subject is due at once
    await hooks.record_deliveries([Outcome(again, True, now, 204)])
    second = next(d for d in await hooks.due_deliveries(now, 100) if d.subject == ALICE.id)
    assert json.loads(second.body)["data"]["queued_at"].endswith(":02.000000Z")
    # failed for good: the next one too
    await hooks.record_deliveries([Outcome(second, False, now, None, "timed out", None)])
    third = next(d for d in await hooks.due_deliveries(now, 100) if d.subject == ALICE.id)
    assert json.loads(third.body)["data"]["queued_at"].endswith(":03.000000Z")

    shown = {d.id: d for d in await hooks.list_deliveries(hook.id, None, 100)}
    assert (shown[first.id].status, shown[first.id].attempts) == ("delivered", 2)
    assert shown[first.id].last_status == 204 and shown[first.id].finished_at is not None
    assert (shown[second.id].status, shown[second.id].last_error) == ("failed", "timed out")
    assert shown[third.id].status == "pending" and shown[third.id].attempts == 0
    assert [d.id for d in await hooks.list_deliveries(hook.id, None, 100, "failed")] == [second.id]
    pending = await hooks.list_deliveries(hook.id, None, 100, "pending")
    assert {d.subject for d in await hooks.due_deliveries(now, 100)} == {ALICE.id, CAROL.id}
    assert len(pending) == 2


async def test_repair_frees_a_subject_left_without_a_pending_delivery(
    store: Store, hooks: WebhookQueries, harness: Any, new_id: IdGenerator
) -> None:
    await subscribe(hooks, new_id, "conversation.queued")
    await people(store)
    store.write(Enqueue(ALICE.id, 1.0))
    store.write(Enqueue(ALICE.id, 2.0))
    await store.flush()
    await fan_out(hooks, new_id)
    (head,) = await hooks.due_deliveries(time.time() + 1, 10)
    # as if two workers had raced: the head finished, and nothing was made pending
    sql = f"UPDATE webhook_deliveries SET status = 'delivered' WHERE id = '{head.id}'"
    query(harness, sql)
    assert await hooks.due_deliveries(time.time() + 1, 10) == []
    assert await hooks.repair_deliveries(time.time()) == 1
    (nxt,) = await hooks.due_deliveries(time.time() + 1, 10)
    assert json.loads(nxt.body)["data"]["queued_at"].endswith(":02.000000Z")
    assert await hooks.repair_deliveries(time.time()) == 0


async def test_account_events_are_written_with_the_change(
    store: Store, hooks: WebhookQueries, harness: Any, new_id: IdGenerator
) -> None:
    await store.create_account(CAROL)  # no webhook yet: no event
    hook = await subscribe(hooks, new_id, "account.updated", "account.erased")
    await store.create_account(ALICE)  # not subscribed
    await store.update_account(ALICE.id, AccountUpdate(nickname="Al"))
    await store.update_account(ALICE.id, AccountUpdate())  # nothing changed: no event
    await store.erase_account(ALICE.id, 100.0)
    await store.erase_account(ALICE.id, 101.0)  # erased already: no second event
    await fan_out(hooks, new_id)
    got = bodies(harness, hook)
    assert [b["event"] for b in got] == ["account.updated", "account.erased"]
    assert got[0]["data"]["nickname"] == "Al" and got[0]["data"]["erased"] is False
    erased = got[1]["data"]
    assert erased["erased"] is True and erased["disabled"] is True and erased["nickname"] is None
    assert "password_hash" not in erased and erased["id"] == ALICE.id


async def test_an_item_that_fails_writes_no_event(
    store: Store, hooks: WebhookQueries, harness: Any, new_id: IdGenerator
) -> None:
    hook = await subscribe(hooks, new_id, "message.created")
    await people(store)
    cid = new_id()
    store.write(OpenConversation(cid, ALICE.id, BOB.id, 1.0))
    good = [text(new_id, cid, ALICE.id, BOB.id, f"ok{i}") for i in range(3)]
    bad = text(new_id, "no-such-conversation", ALICE.id, BOB.id, "refused")
    results = await send(store, [good[0], bad, good[1], good[2]])
    assert not isinstance(results[1], Appended)
    await fan_out(hooks, new_id)
    got = bodies(harness, hook)
    assert [b["data"]["id"] for b in got] == [m.id for m in good]


async def test_prune_keeps_what_is_pending(
    store: Store, hooks: WebhookQueries, new_id: IdGenerator
) -> None:
    hook = await subscribe(hooks, new_id, "conversation.queued")
    await people(store)
    store.write(Enqueue(ALICE.id, 1.0))
    store.write(Enqueue(CAROL.id, 1.0))
    await store.flush()
    await fan_out(hooks, new_id)
    done, _ = await hooks.due_deliveries(time.time() + 1, 10)
    await hooks.record_deliveries([Outcome(done, True, time.time(), 200)])
    assert await hooks.prune_deliveries(time.time() - 3600) == 0  # too recent
    assert await hooks.prune_deliveries(time.time() + 1) == 1
    assert [d.status for d in await hooks.list_deliveries(hook.id, None, 10)] == ["pending"]
    assert await hooks.delete_webhook(hook.id)
    assert not await hooks.delete_webhook(hook.id)
    assert await hooks.get_webhook(hook.id) is None


def test_a_transfer_split_over_two_batches_is_still_one() -> None:
    """The reopening names the conversation the transfer closed: however the two records
    fall into batches (or are retried), the event comes from the reopening alone."""
    outbox = Outbox(Subscriptions(), clock=lambda: 5.0)
    outbox.subscriptions.set([["*"]])
    close = CloseConversation("c1", CloseReason.TRANSFERRED, 7.0)
    reopen = OpenConversation("c2", "u", "w2", 7.0, 1.0, transferred_from="c1")
    first = outbox.rows([close], [True])
    outbox.rows([Enqueue("u2", 7.0)], [None])  # another record between them changes nothing
    second = outbox.rows([reopen], [True])
    assert [r[0] for r in first] == ["conversation.closed"]
    assert [r[0] for r in second] == ["conversation.transferred", "conversation.assigned"]
    assert second[0][3] == "c1"
    # an opening that is not for a transfer is no transfer, even right after one's close
    outbox.rows([close], [True])
    plain = OpenConversation("c3", "u", "w2", 7.0, 1.0)
    assert [r[0] for r in outbox.rows([plain], [True])] == ["conversation.assigned"]


def test_due_delivery_repr_hides_the_secret() -> None:
    due = DueDelivery("d", "w", "s", "e", "{}", 0, 1.0, "https://x", "hush-hush")
    hook = Webhook("w", "https://x", ("*",), 1.0, "hush-hush")
    assert "hush-hush" not in repr(due) and "hush-hush" not in repr(hook)
