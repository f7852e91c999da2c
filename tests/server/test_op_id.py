"""The longest op_id a frame may carry (128 characters), end to end on SQLite and PostgreSQL.

PostgreSQL refused to store such a message while `messages.op_id` was 64 wide.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.client import Client, pair
from support.servers import MakeServer, Server
from support.services import create_database, drop_database

pytestmark = pytest.mark.timeout(60)

MAX_OP_ID = 128  # protocol.md: op_id is a string; kefu.protocol.frames accepts 128 characters


def _op_id(tag: str) -> str:
    return (tag + "-" + "0123456789abcdef" * 8)[:MAX_OP_ID]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The settings of a server on a fresh SQLite file (the default) or PostgreSQL database.

    Ask for it before `make_server`, so that the server stops before its database is dropped.
    """
    if request.param == "sqlite":
        yield {}
        return
    name, url = create_database("kefu_test_op_id")  # fails with CI=true if PostgreSQL is down
    try:
        yield {"database_url": url}
    finally:
        drop_database(name)


async def _history_ids(user: Client) -> list[str]:
    await user.send({"type": "get_history"})
    frame = await user.expect("message_history")
    return [m["id"] for m in frame["payload"]]


async def _paired(srv: Server) -> tuple[Client, Client]:
    waiter = await srv.waiter()
    user = await srv.user()
    await pair(user, waiter)
    return user, waiter


async def test_a_128_character_op_id_is_stored_acked_and_deduplicated(
    database_settings: dict[str, str], make_server: MakeServer
) -> None:
    srv = make_server(**database_settings)
    user, waiter = await _paired(srv)
    op = _op_id("user")
    assert len(op) == MAX_OP_ID

    first = await user.send_text("hello", op_id=op)  # the ack echoes all 128 characters
    await waiter.expect("message_text", from_=user.uuid, id=first["id"])
    again = await user.send_text("hello", op_id=op)
    assert again["id"] == first["id"]
    await user.send({"type": "message_text", "op_id": op, "payload": {"text": "changed"}})
    await user.expect_error(100006, op_id=op)

    # the retry may be delivered again (receivers dedupe by id), the changed text is not
    for frame in await waiter.drain(("message_text",)):
        assert frame["id"] == first["id"] and frame["payload"] == {"text": "hello"}, frame

    answer_op = _op_id("waiter")
    await waiter.send(
        {"type": "message_text", "op_id": answer_op, "to": user.uuid, "payload": {"text": "hi"}}
    )
    answer = await waiter.expect("message_text_success", op_id=answer_op, skip=("message_text",))
    await user.expect("message_text", from_=waiter.uuid, id=answer["id"])
    assert await _history_ids(user) == [answer["id"], first["id"]]  # newest first, each once
