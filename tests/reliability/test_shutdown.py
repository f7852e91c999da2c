"""SIGTERM: stop accepting, close every socket with 1012, flush the writer, exit.

Clients then resume on the next start: conversations and queue places are
back, and what they resend with the same op_id is stored once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from support.client import Client, close_code, new_op_id, pair, person
from support.logscan import remember

from .conftest import server_logs
from .wire import connect_ws, db_rows

pytestmark = pytest.mark.timeout(60)

PAIRS = 10
QUEUED = 3


async def _drain(c: Client, acks: dict[str, str]) -> int | None:
    """Read until the socket closes; collect acks (op_id -> id); the close code."""
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(c.ws.recv(), 15))
            if frame["type"] == "message_text_success":
                acks[frame["op_id"]] = frame["id"]
    except ConnectionClosed as exc:
        return close_code(exc)


async def test_sigterm_drains_closes_1012_and_clients_resume(kefu_server: Any) -> None:
    srv = kefu_server(resume_grace=30, max_users_per_waiter=1, log_level="info")
    wps = [person("waiter") for _ in range(PAIRS)]
    ups = [person("user") for _ in range(PAIRS + QUEUED)]
    waiters, users = [], []
    for wp, up in zip(wps, ups, strict=False):
        w = await srv.waiter(wp)
        u = await srv.user(up)
        await pair(u, w)
        waiters.append(w)
        users.append(u)
    queued = []
    for i, up in enumerate(ups[PAIRS:]):
        q = await srv.user(up, label=f"queued{i}")
        await q.send({"type": "connect"})
        await q.expect("connect_queue", payload={"location": i})
        queued.append(q)

    # every user keeps sending; SIGTERM lands in the middle of it
    sent: dict[str, tuple[str, str]] = {}  # op_id -> (user id, text)

    async def chatter(u: Client) -> None:
        assert u.person is not None
        for i in range(10_000):
            op = new_op_id()
            text = f"{u.label} says {i} {op[:6]}"
            remember(text)
            sent[op] = (u.person.id, text)  # before the send: it may get through
            try:
                await u.ws.send(json.dumps({"type": "message_text", "op_id": op,
                                            "payload": {"text": text}}))  # fmt: skip
            except ConnectionClosed:
                del sent[op]
                return
            await asyncio.sleep(0.005)

    chatters = [asyncio.create_task(chatter(u)) for u in users]
    await asyncio.sleep(0.5)
    assert srv.proc is not None
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    acks: dict[str, str] = {}
    codes = await asyncio.gather(*(_drain(c, acks) for c in [*users, *waiters, *queued]))
    await asyncio.gather(*chatters)
    # once sockets are closed, nobody new gets in
    refused = False
    try:
        ws = await connect_ws(srv.ws_url("/v1/ws/connect/user"), open_timeout=2)
        await ws.close()
    except (OSError, InvalidHandshake, TimeoutError):
        refused = True
    # it exits by itself (uvicorn's graceful shutdown gives up after 5 s); that it does not
    # wait for clients' close answers is test_direct's, told without a clock
    exit_code = await asyncio.to_thread(srv.proc.wait, 30)
    exit_seconds = time.monotonic() - t0
    print("SIGTERM:", json.dumps({
        "close_codes": sorted(set(codes), key=str), "exit_seconds": round(exit_seconds, 2),
        "exit_code": exit_code, "sent": len(sent), "acked_before_exit": len(acks),
    }))  # fmt: skip
    assert set(codes) == {1012}, codes
    assert refused, "a new connection was accepted during shutdown"
    # uvicorn re-raises the signal once its graceful shutdown is done: -15 is a clean exit
    assert exit_code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server_logs(srv)
    # the writer was flushed: everything acked is stored
    stored = {r[0]: r[1] for r in db_rows(srv.db_path, "SELECT op_id, id FROM messages")}
    assert all(stored.get(op) == mid for op, mid in acks.items())
    flushed_unacked = len(set(stored) - set(acks))

    # next start: everyone resumes
    await asyncio.to_thread(srv.start)
    for i, (q, up) in enumerate(zip(queued, ups[PAIRS:], strict=True)):
        back = await srv.open("user", f"{q.label}-back")
        await back.auth(up)
        await back.expect("connect_queue", payload={"location": i})
    resent_ids: dict[str, str] = {}
    for up, wp in zip(ups, wps, strict=False):
        w2 = await srv.open("waiter", f"{wp.username}-back")
        await w2.auth(wp)
        await w2.send({"type": "ready"})
        u2 = await srv.open("user", f"{up.username}-back")
        await u2.auth(up)
        await u2.expect("connect_success", from_=w2.uuid)
        for op, (uid, text) in sent.items():
            if uid == up.id and op not in acks:
                ack = await u2.send_text(text, op_id=op)
                resent_ids[op] = ack["id"]
    rows = db_rows(srv.db_path, "SELECT op_id, id, payload FROM messages")
    assert len(rows) == len(sent), (len(rows), len(sent))
    by_op = {r[0]: r for r in rows}
    for op, (_, text) in sent.items():
        assert json.loads(by_op[op][2]) == {"text": text}
        assert by_op[op][1] == acks.get(op, resent_ids.get(op))
    resume = {"resent": len(resent_ids), "already_stored_on_resend": flushed_unacked}
    print("SIGTERM resume:", json.dumps(resume))
    assert "Traceback" not in server_logs(srv)
