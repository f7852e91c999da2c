"""Resume with `last_id` past more than one replay page (the server reads 500 messages a page).

What was stored after `last_id` in the open conversation comes again, the
other side's messages only (the resuming side had acks for its own), each
once, oldest first, with their original ids, from every page, not the first
alone. The resuming side's own messages are spread through the pages, so a
page is never all the other side's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.client import Client, new_op_id, pair, person, say
from support.servers import MakeServer

pytestmark = pytest.mark.timeout(60)

PAGE = 500  # REPLAY_PAGE in kefu/server/history.py: the test must span several
OTHERS = 2 * PAGE + 150  # three pages of the other side's messages, and some of its own
CHUNK = 150  # sent at once, then read, so no send queue fills (send_queue_size 1024)


async def _burst(sender: Client, receiver: Client, n: int, start: int) -> list[dict[str, Any]]:
    """`n` messages pipelined from `sender`, acked, and read by `receiver`; their acks."""
    to = receiver.uuid if sender.side == "waiter" else None
    ops = [new_op_id() for _ in range(n)]
    for i, op in enumerate(ops):
        frame: dict[str, Any] = {
            "type": "message_text",
            "op_id": op,
            "payload": {"text": f"{sender.side} message {start + i}"},
        }
        if to is not None:
            frame["to"] = to
        await sender.send_raw(json.dumps(frame))
    acks = [await sender.expect("message_text_success", op_id=op) for op in ops]
    for ack in acks:
        await receiver.expect("message_text", id=ack["id"])
    return acks


async def _history_of_conversation(
    sender: Client, receiver: Client, mine_every: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OTHERS messages from `sender`, with one of `receiver`'s own every `mine_every`."""
    theirs: list[dict[str, Any]] = []
    mine: list[dict[str, Any]] = []
    while len(theirs) < OTHERS:
        n = min(CHUNK, OTHERS - len(theirs))
        theirs += await _burst(sender, receiver, n, len(theirs))
        for _ in range(max(1, CHUNK // mine_every)):
            mine.append(await say(receiver, sender, f"own message {len(mine)} of {receiver.side}"))
    return theirs, mine


async def _replayed(client: Client, peer_uuid: str | None) -> list[dict[str, Any]]:
    """Everything the resumed socket got up to a barrier, which the server answers only
    once the replay (awaited before the socket's next frame) is done."""
    frames = await client.sync(timeout=30)
    texts = [f for f in frames if f["type"] == "message_text"]
    others = [f for f in frames if f["type"] != "message_text"]
    assert all(f["type"] in ("connect_success", "new_connection", "ready") for f in others), others
    if peer_uuid is not None:
        assert all(f["from"] == peer_uuid for f in texts), texts[:3]
    return texts


def _check(replayed: list[dict[str, Any]], theirs: list[dict[str, Any]], mine: Any) -> None:
    got = [f["id"] for f in replayed]
    own = {m["id"] for m in mine}
    assert not own & set(got), f"{len(own & set(got))} of the resuming side's own came back"
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} messages came twice"
    missing = [a["id"] for a in theirs if a["id"] not in set(got)]
    assert not missing, f"{len(missing)} of {len(theirs)} never came (from {missing[0]} on)"
    assert got == [a["id"] for a in theirs], "not in the order stored"
    texts = [f["payload"]["text"] for f in replayed]
    assert texts == [a["payload"]["text"] for a in theirs]


async def test_user_resume_replays_every_page_of_the_waiters_messages(
    make_server: MakeServer,
) -> None:
    srv = make_server(resume_grace=60)
    waiter = await srv.waiter()
    who = person("user")
    user = await srv.user(who)
    await pair(user, waiter)
    last = await say(waiter, user, "the last one the user saw")
    theirs, mine = await _history_of_conversation(waiter, user, mine_every=50)
    user.abort()
    await srv.until("the user's drop seen", lambda d: d["online_user_num"] == 0)

    back = await srv.open("user", "user-back")
    await back.auth(who, last_id=last["id"])
    _check(await _replayed(back, waiter.uuid), theirs, mine)
    await waiter.expect("new_connection", from_=back.uuid)  # its user is back
    await say(back, waiter, "and the conversation goes on")


async def test_waiter_resume_replays_every_page_of_the_users_messages(
    make_server: MakeServer,
) -> None:
    srv = make_server(resume_grace=60)
    who = person("waiter")
    waiter = await srv.waiter(who)
    user = await srv.user()
    await pair(user, waiter)
    last = await say(user, waiter, "the last one the waiter saw")
    theirs, mine = await _history_of_conversation(user, waiter, mine_every=50)
    waiter.abort()
    await srv.until("the waiter's drop seen", lambda d: d["online_waiter_num"] == 0)

    back = await srv.open("waiter", "waiter-back")
    await back.auth(who, last_id=last["id"])
    _check(await _replayed(back, user.uuid), theirs, mine)
    await user.expect("connect_success", from_=back.uuid)  # its waiter is back
    await say(user, back, "and the conversation goes on")
