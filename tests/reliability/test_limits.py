"""Limits of protocol section 10, each pushed past its edge on a live server."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from kefu.server.serve import uvicorn_config
from kefu.settings import Settings
from support.client import check_date, close_code, new_op_id, pair, person, say

from .conftest import SLOW
from .wire import connect_ws, count_rows, db_rows, token_of

pytestmark = pytest.mark.timeout(90 if SLOW else 40)


async def test_auth_timeout_closes_4401_and_frames_before_auth_do_nothing(
    kefu_server: Any,
) -> None:
    timeout = 2.0  # the authenticated socket below has this long to authenticate
    srv = kefu_server(auth_timeout=timeout)
    t0 = time.monotonic()  # before the server accepts anything: its timers start later
    ok = await srv.user()  # opened first: its timer, were it not cancelled, would fire first
    silent = await srv.open("user", "silent")
    chatty = await srv.open("user", "chatty")
    await chatty.send({"type": "connect"})
    await chatty.expect_error(999999)
    await chatty.send({"type": "message_text", "payload": {"text": "before auth"}})
    await chatty.expect_error(999999)
    # within 8 s: the setting is used, not the default (10 s)
    await silent.expect_closed(4401, timeout=8)
    await chatty.expect_closed(4401, timeout=8)
    assert time.monotonic() - t0 >= timeout  # not before the timeout
    assert count_rows(srv.db_path, "messages") == 0
    # an authenticated socket is never closed by the auth timer
    await ok.send({"type": "get_history"})
    await ok.expect("message_history")


async def test_rate_limit_refuses_without_storing_then_1008(kefu_server: Any) -> None:
    srv = kefu_server(rate_limit=5, rate_burst=10)
    w, u = await srv.waiter(), await srv.user()
    await pair(u, w)
    await asyncio.sleep(2.5)  # refill the bucket after the set-up frames
    # 18 at once: the burst (10) passes, 8 are refused; a refusal streak longer than
    # the burst would count as sustained abuse (1008, tested below)
    ops = [new_op_id() for _ in range(18)]
    sent_at = time.time()  # the server reads the first frame after this
    for i, op in enumerate(ops):
        await u.ws.send(json.dumps({"type": "message_text", "op_id": op,
                                    "payload": {"text": f"flood {i}"}}))  # fmt: skip
    acked, limited = [], []
    last_answer = sent_at
    for _ in ops:
        frame = await u.recv()
        # every frame was read before its answer was dated
        last_answer = max(last_answer, check_date(frame["date"]).timestamp())
        if frame["type"] == "message_text_success":
            acked.append(frame)
        else:
            assert frame["type"] == "error" and frame["payload"]["status"] == 100000, frame
            assert frame["payload"]["message"] == "rate limited"
            limited.append(frame)
    # the burst, plus what refilled (5 a second) while the server read the 18 frames,
    # however slowly it read them
    refilled = int(5 * (last_answer - sent_at)) + 1
    assert 10 <= len(acked) <= 10 + refilled, (len(acked), refilled)
    rows = db_rows(srv.db_path, "SELECT op_id FROM messages")
    assert {r[0] for r in rows} == {a["op_id"] for a in acked}
    # other sockets are not limited by this one
    w2, u2 = await srv.waiter(), await srv.user()
    await pair(u2, w2)
    await say(u2, w2, "unaffected")
    # sustained abuse: the socket is closed with 1008
    code = None
    try:
        for i in range(200):
            await u.ws.send(json.dumps({"type": "typing", "payload": {"typing": True}}))
            if i % 20 == 19:
                await asyncio.sleep(0)
        while True:
            await asyncio.wait_for(u.ws.recv(), 5)
    except ConnectionClosed as exc:
        code = close_code(exc)
    assert code == 1008


async def test_sockets_per_account(kefu_server: Any) -> None:
    srv = kefu_server(max_user_sockets=2, resume_grace=5)
    who = person("user")
    a = await srv.user(who, label="a")
    b = await srv.user(who, label="b")
    c = await srv.open("user", "c")
    await c.send({"type": "auth", "payload": {"token": token_of(who)}})
    await c.expect_error(100002)
    await a.close()
    await srv.until("the closed socket gone", lambda d: d["online_user_num"] == 1)
    await c.auth(who)  # a place is free again
    await b.send({"type": "get_history"})
    await b.expect("message_history")
    # one socket per waiter: the second login takes over, the first is kicked out
    wp = person("waiter")
    w1 = await srv.waiter(wp, label="w1")
    w2 = await srv.open("waiter", "w2")
    await w2.auth(wp)
    await w1.expect("kickout", skip=("ready",))
    await w1.expect_closed(4409)


async def test_frame_size_limit_is_1009_at_64_kib(kefu_server: Any) -> None:
    srv = kefu_server()
    u = await srv.user()
    ok = await srv.user()
    limit = 65536
    body = json.dumps({"type": "get_history", "payload": {"pad": ""}})
    at_limit = body.replace('"pad": ""', '"pad": "' + "x" * (limit - len(body)) + '"')
    assert len(at_limit.encode()) == limit
    await u.ws.send(at_limit)
    await u.expect("message_history")
    # one byte more, in a multi-byte character: counted in bytes, not characters
    over = at_limit.replace("x", "é", 1)
    assert len(over.encode()) == limit + 1
    await u.ws.send(over)
    await u.expect_closed(1009)
    await ok.send({"type": "get_history"})
    await ok.expect("message_history")


async def test_permessage_deflate_is_refused(kefu_server: Any) -> None:
    srv = kefu_server()
    ws = await connect_ws(srv.ws_url("/v1/ws/connect/user"), compression="deflate")
    try:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert ws.protocol.extensions == []
    finally:
        await ws.close()


def test_keepalive_is_a_ping_every_20_s_and_20_s_to_answer() -> None:
    """The values `kefu serve` runs with. That served sockets ping and close as configured
    is told live by test_direct (in process, short values) and by the slow test below
    (kefu serve, these values); the frame limit, permessage-deflate and the shutdown by
    the tests above and test_shutdown."""
    config = uvicorn_config(object(), Settings())
    assert config.ws_ping_interval == 20.0 and config.ws_ping_timeout == 20.0


@pytest.mark.slow
async def test_a_peer_that_never_answers_pings_is_dropped(kefu_server: Any) -> None:
    """Ping every 20 s, 20 s to answer: a silent peer is gone within ~45 s."""
    srv = kefu_server(resume_grace=0)
    ws = await connect_ws(srv.ws_url("/v1/ws/connect/user"))
    await ws.send(json.dumps({"type": "auth", "payload": {"token": token_of(person("user"))}}))
    json.loads(await ws.recv())
    ws.transport.pause_reading()  # no more reading: no pong either
    t0 = time.monotonic()
    while (await srv.status())["data"]["online_user_num"] != 0:
        assert time.monotonic() - t0 < 50, "the silent peer was never dropped"
        await asyncio.sleep(1)
    assert time.monotonic() - t0 >= 19
    ws.transport.abort()
