"""A client that stops reading: closed with 1013, nobody else stalls, nothing is lost.

The slow user has a 4 KiB receive buffer and a client queue of one frame, so
it stops taking data off the wire at once. Its waiter sends it 10,000
messages; meanwhile 50 other pairs chat and time each message. Then the
slow client reads again: it must find a close with 1013 after the frames
that made it out, and on resume (`last_id`) get every other message, each
exactly once. The server's RSS must grow by less than 50 MB. Nobody else
stalls: every message of the other pairs arrives while the slow client reads
nothing (their latencies are reported, not bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from support.client import BARRIER_TYPE, Client, close_code, pair, person
from support.logscan import remember

from .conftest import SLOW, rss_kib
from .wire import connect_ws, db_rows, recv_json, recv_until, token_of

pytestmark = pytest.mark.timeout(300 if SLOW else 120)

FLOOD = 10_000
PAIRS = 50
ROUNDS = 40 if SLOW else 20  # messages per other pair during the flood
WINDOW = 256  # unacked messages the flooding waiter allows itself


async def _pair_traffic(user: Client, waiter: Client, latencies: list[float]) -> None:
    for i in range(ROUNDS):
        t0 = time.perf_counter()
        text = f"steady {user.label} {i}"
        ack = await user.send_text(text, op_id=None)
        got = await waiter.expect("message_text", from_=user.uuid, id=ack["id"], timeout=30)
        assert got["payload"] == {"text": text}
        latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(0.05)


async def test_slow_reader_is_closed_1013_and_resumes_everything(kefu_server: Any) -> None:
    srv = kefu_server(resume_grace=60, max_users_per_waiter=1, send_queue_size=1024)
    assert srv.proc is not None
    # the 50 pairs that must keep working
    others: list[tuple[Client, Client]] = []
    for i in range(PAIRS):
        w = await srv.waiter(label=f"w{i}")
        u = await srv.user(label=f"u{i}")
        await pair(u, w)
        others.append((u, w))

    # the slow pair
    slow_p, sw_p = person("user"), person("waiter")
    sw = await srv.waiter(sw_p, label="slow-waiter")
    slow = await connect_ws(srv.ws_url("/v1/ws/connect/user"), max_queue=1, rcvbuf=4096)
    await slow.send(json.dumps({"type": "auth", "payload": {"token": token_of(slow_p)}}))
    await recv_until(slow, "auth_success")
    await slow.send(json.dumps({"type": "connect"}))
    ok, _ = await recv_until(slow, "connect_success")
    slow_socket = ok["to"]
    await sw.expect("new_connection", from_=slow_socket)
    await asyncio.sleep(0.5)
    base_rss = rss_kib(srv.proc.pid)
    peak = [base_rss]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], rss_kib(srv.proc.pid))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    latencies: list[float] = []
    sent_ids: list[str] = []

    async def flood() -> None:
        """Send FLOOD messages to the slow user, at most WINDOW unacked at a time."""
        body = "x" * 200
        pending: set[str] = set()
        i = 0
        while i < FLOOD or pending:
            while i < FLOOD and len(pending) < WINDOW:
                op = f"flood-{i}"
                pending.add(op)
                frame = {"type": "message_text", "to": slow_socket, "op_id": op,
                         "payload": {"text": f"{i} {body}"}}  # fmt: skip
                await sw.ws.send(json.dumps(frame))
                i += 1
            frame = json.loads(await asyncio.wait_for(sw.ws.recv(), 30))
            if frame["type"] == "message_text_success":
                pending.discard(frame["op_id"])
                sent_ids.append(frame["id"])
            elif frame["type"] == "error":
                raise AssertionError(f"flood refused: {frame}")

    t0 = time.monotonic()
    try:
        await asyncio.gather(flood(), *(_pair_traffic(u, w, latencies) for u, w in others))
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    flood_seconds = time.monotonic() - t0
    peak_rss = max(peak[0], rss_kib(srv.proc.pid))

    # the slow client reads again: what made it out, then the close
    live: list[str] = []
    code: int | None = None
    try:
        while True:
            frame = await recv_json(slow, 10)
            if frame["type"] == "message_text":
                live.append(frame["id"])
    except ConnectionClosed as exc:
        code = close_code(exc)
    except TimeoutError:
        code = -1  # still open: never closed

    # resume: last_id = the newest message it got
    again = await connect_ws(srv.ws_url("/v1/ws/connect/user"))
    auth: dict[str, Any] = {"token": token_of(slow_p)}
    if live:
        auth["last_id"] = max(live)
    await again.send(json.dumps({"type": "auth", "payload": auth}))
    # the server answers the barrier once the replay (awaited before the socket's next
    # frame) is done: everything before its answer is the replay, duplicates included
    await again.send(json.dumps({"type": BARRIER_TYPE, "op_id": "after-the-replay"}))
    replayed: list[str] = []
    while True:
        frame = await recv_json(again, 60)
        if frame["type"] == "error" and frame.get("op_id") == "after-the-replay":
            break
        if frame["type"] == "message_text":
            replayed.append(frame["id"])
    await again.close()
    await slow.close()

    got = live + replayed
    stored = {r[0] for r in db_rows(srv.db_path, "SELECT id FROM messages WHERE receiver_id = ?",
                                    slow_p.id)}  # fmt: skip
    lat = sorted(latencies)
    rss_growth_mb = round((peak_rss - base_rss) / 1024, 1)
    report = {
        "flood": FLOOD,
        "flood_seconds": round(flood_seconds, 1),
        "close_code": code,
        "delivered_live": len(live),
        "replayed": len(replayed),
        "missing": len(set(sent_ids) - set(got)),
        "duplicates": len(got) - len(set(got)),
        "replay_in_order": replayed == sorted(replayed),
        "stored_for_slow_user": len(stored),
        "rss_base_mb": round(base_rss / 1024, 1),
        "rss_growth_mb": rss_growth_mb,
        "other_pairs_messages": len(lat),
        "other_p50_ms": round(statistics.median(lat) * 1000, 1),
        "other_p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1),
        "other_max_ms": round(lat[-1] * 1000, 1),
    }
    print("SLOW READER:", json.dumps(report))
    remember(*(f"steady {u.label} 0" for u, _ in others))
    assert len(sent_ids) == FLOOD and set(sent_ids) == stored
    assert len(lat) == PAIRS * ROUNDS
    assert report["close_code"] == 1013, report
    assert report["missing"] == 0, report
    assert report["duplicates"] == 0, report
    assert report["replay_in_order"], report
    assert rss_growth_mb < 50, report
    # nobody else stalled: all the other pairs' messages were delivered while the slow
    # client read nothing (it reads only after them); their latencies are in the report
