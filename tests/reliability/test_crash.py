"""Chaos: chatting pairs while the server is SIGKILLed and restarted; a Jepsen-style set check.

Every client keeps what it sent until it is acked; after a reconnect it
authenticates with `last_id` (the newest message it got from its peer) and
resends its unacked frames with their original `op_id`. At the end the
database and what the clients saw are compared:

* acked but not stored, stored twice, stored but never delivered to the
  recipient (live or by replay), conversations lost, queue reordered: all 0;
* a message delivered in two sessions of a client (each resumes after the
  newest id it got), or twice or out of id order on a socket that did not
  begin with a replay: 0;
* for information: duplicate and out-of-order deliveries on a resumed
  socket (allowed there: the replay and live messages may overlap and
  interleave; clients dedupe and sort by id), resends that found their
  message already stored ("recovered", Jepsen's indeterminate-but-present).

CI size: 20 pairs (waiters with one seat) and 5 queued users, 4 kills.
KEFU_SLOW_TESTS=1: 20 pairs, 12 kills, longer runs between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from support.client import Person, person
from support.logscan import remember

from .conftest import SLOW
from .wire import connect_ws, db_rows, token_of

pytestmark = pytest.mark.timeout(600 if SLOW else 150)

PAIRS = 20
QUEUED = 5
KILLS = 12 if SLOW else 4
RUN_SECONDS = 6.0 if SLOW else 1.5
SEND_EVERY = 0.2  # seconds between messages of one client: 40 senders -> ~200 msgs/s
WINDOW = 8  # at most this many unacked messages in flight per client

FAILURES: list[BaseException] = []  # a client saw something it must never see


@dataclass
class Agent:
    """One person (user or waiter) who keeps talking across crashes."""

    who: Person
    side: str  # "user" | "waiter"
    url: str
    label: str
    partner: Agent | None = None
    users: dict[str, Agent] = field(default_factory=dict)  # waiters: user id -> agent
    ws: ClientConnection | None = None
    socket: str | None = None
    peer_socket: str | None = None  # waiter: the user's current socket
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # may send messages now
    queued: asyncio.Event = field(default_factory=asyncio.Event)
    pending: dict[str, str] = field(default_factory=dict)  # op_id -> text, not acked yet
    inflight: set[str] = field(default_factory=set)
    texts: dict[str, str] = field(default_factory=dict)  # every op_id ever made -> text
    acks: dict[str, list[str]] = field(default_factory=dict)  # op_id -> ids acked (each time)
    received: list[str] = field(default_factory=list)  # ids from the peer, every delivery
    deliveries: list[tuple[int, str]] = field(default_factory=list)  # (session, id) of each
    replaying: set[int] = field(default_factory=set)  # sessions that began with `last_id`
    last_peer_id: str | None = None
    locations: list[tuple[int, int]] = field(default_factory=list)  # (epoch, location)
    sessions: int = 0
    resumed_by_server: int = 0  # sessions where the server restored the state unasked
    lost: int = 0  # sessions where the server had forgotten the conversation/queue place
    empty_from: int = 0  # new_connection frames whose `from` was empty
    refused: Counter[int] = field(default_factory=Counter)  # error statuses seen
    sends: Counter[str] = field(default_factory=Counter)  # op_id -> times sent
    recent: list[Any] = field(default_factory=list)  # the last frames, for failure messages
    counter: int = 0
    epoch: int = 0
    stop: bool = False
    talk: bool = True

    def next_message(self) -> tuple[str, str]:
        self.counter += 1
        op = str(uuid.uuid4())
        text = f"{self.label} says #{self.counter} ({op[:8]})"
        self.texts[op] = text
        self.pending[op] = text
        remember(text)
        return op, text

    # -- the session loop -------------------------------------------------------
    async def run(self) -> None:
        while not self.stop:
            try:
                await self.session()
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
                pass
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                FAILURES.append(exc)
                return
            self.ready.clear()
            self.ws = None
            if not self.stop:
                await asyncio.sleep(0.05 + random.random() * 0.1)

    async def session(self) -> None:
        ws = await connect_ws(self.url, open_timeout=3)
        self.ws = ws
        self.sessions += 1
        self.inflight.clear()
        try:
            auth: dict[str, Any] = {"token": token_of(self.who)}
            if self.last_peer_id is not None:
                auth["last_id"] = self.last_peer_id
                self.replaying.add(self.sessions)
            await ws.send(json.dumps({"type": "auth", "payload": auth}))
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert first["type"] == "auth_success", first
            self.socket = first["to"]
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.reader(ws))
                tg.create_task(self.opening(ws))
                tg.create_task(self.sender(ws))
        except* (ConnectionClosed, OSError, TimeoutError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await ws.close()

    async def opening(self, ws: ClientConnection) -> None:
        """After auth: expect the server to restore our state; else start over."""
        if self.side == "waiter":
            await ws.send(json.dumps({"type": "ready"}))
            return
        if self.sessions == 1:
            await ws.send(json.dumps({"type": "connect"}))
            return
        try:
            await asyncio.wait_for(self._restored(), 3)
            self.resumed_by_server += 1
        except TimeoutError:
            self.lost += 1
            await ws.send(json.dumps({"type": "connect"}))

    async def _restored(self) -> None:
        while not (self.ready.is_set() or self.queued.is_set()):
            await asyncio.sleep(0.02)

    async def reader(self, ws: ClientConnection) -> None:
        self.queued.clear()
        async for raw in ws:
            self.on_frame(json.loads(raw))
        raise ConnectionResetError("closed")  # ends the session's other tasks too

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        self.recent = [*self.recent[-7:], frame]
        if kind in ("message_text_success", "message_image_success"):
            op: str = frame.get("op_id") or ""
            if op in self.pending:
                del self.pending[op]
            self.inflight.discard(op)
            self.acks.setdefault(op, []).append(frame["id"])
        elif kind in ("message_text", "message_image"):
            self.received.append(frame["id"])
            self.deliveries.append((self.sessions, frame["id"]))
            if self.last_peer_id is None or frame["id"] > self.last_peer_id:
                self.last_peer_id = frame["id"]
        elif kind == "connect_success":
            self.ready.set()
        elif kind == "connect_queue":
            self.queued.set()
            self.locations.append((self.epoch, frame["payload"]["location"]))
        elif kind == "new_connection":
            if self.partner is None:  # the first user we are given is our partner
                self.partner = self.users[frame["payload"]["id"]]
            if frame["payload"]["id"] != self.partner.who.id:
                raise AssertionError(f"[{self.label}] a second user: {frame}")
            if not frame.get("from"):
                self.empty_from += 1
                return
            self.peer_socket = frame["from"]
            self.inflight.clear()  # everything unacked goes again, to the new socket
            self.ready.set()
        elif kind == "error":
            status = frame["payload"]["status"]
            self.refused[status] += 1
            self.inflight.discard(frame.get("op_id") or "")
            if status == 100002 and self.side == "waiter":
                self.ready.clear()  # our user's socket changed: wait for new_connection
            elif status == 100006:
                raise AssertionError(f"[{self.label}] op_id conflict on a resend: {frame}")
        elif kind == "not_connect":
            self.inflight.discard(frame.get("op_id"))
        elif kind == "disconnected":
            raise AssertionError(f"[{self.label}] conversation ended: {frame}")

    async def sender(self, ws: ClientConnection) -> None:
        last_new = 0.0
        while not self.stop:
            await self.ready.wait()
            # resend whatever is unacked and not in flight on this socket, oldest first
            for op, text in list(self.pending.items()):
                if op in self.inflight or not self.ready.is_set():
                    continue
                if len(self.inflight) >= WINDOW:
                    break
                await self._send(ws, op, text)
            now = time.monotonic()
            if (
                self.talk
                and self.ready.is_set()
                and now - last_new >= SEND_EVERY
                and len(self.inflight) < WINDOW
            ):
                last_new = now
                op, text = self.next_message()
                await self._send(ws, op, text)
            await asyncio.sleep(0.02)

    async def _send(self, ws: ClientConnection, op: str, text: str) -> None:
        self.sends[op] += 1
        frame: dict[str, Any] = {"type": "message_text", "op_id": op, "payload": {"text": text}}
        if self.side == "waiter":
            frame["to"] = self.peer_socket
        self.inflight.add(op)
        await ws.send(json.dumps(frame))

    async def burst(self, n: int) -> None:
        """Send `n` new messages at once (right before a kill: some will be in flight)."""
        ws = self.ws
        if ws is None or not self.ready.is_set():
            return
        for _ in range(n):
            op, text = self.next_message()
            try:
                await self._send(ws, op, text)
            except ConnectionClosed:
                return

    async def reconnect(self) -> None:
        """Drop the socket on purpose (the final resume): `run` opens a new one."""
        if self.ws is not None:
            await self.ws.close()


async def _wait(pred: Any, timeout: float, what: str, why: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if FAILURES:
            raise FAILURES[0]
        if time.monotonic() > deadline:
            detail = why() if why is not None else ""
            raise AssertionError(f"timed out waiting for {what}: {detail}")
        await asyncio.sleep(0.05)


async def test_sigkill_chaos_loses_nothing(kefu_server: Any) -> None:
    srv = kefu_server(resume_grace=60, max_users_per_waiter=1, idle_timeout=3600, log_level="info")
    url_user = srv.ws_url("/v1/ws/connect/user")
    url_waiter = srv.ws_url("/v1/ws/connect/waiter")
    waiters = [Agent(person("waiter"), "waiter", url_waiter, f"waiter{i}") for i in range(PAIRS)]
    users = [Agent(person("user"), "user", url_user, f"user{i}") for i in range(PAIRS)]
    by_id = {u.who.id: u for u in users}
    for w in waiters:
        w.users = by_id
    extra = [Agent(person("user"), "user", url_user, f"queued{i}") for i in range(QUEUED)]
    for q in extra:
        q.talk = False

    tasks: list[asyncio.Task[None]] = []
    try:
        # all waiters, then all users (each waiter learns its user from new_connection);
        # then the queue forms behind them, one at a time so its order is known
        for w in waiters:
            tasks.append(asyncio.create_task(w.run()))
        await _wait(lambda: all(w.sessions and w.ws is not None for w in waiters), 10, "waiters")
        await asyncio.sleep(0.3)  # their `ready` went first
        for u in users:
            tasks.append(asyncio.create_task(u.run()))
        await _wait(lambda: all(a.ready.is_set() for a in waiters + users), 10, "the pairs")
        for w in waiters:
            assert w.partner is not None
            w.partner.partner = w
        assert {id(w.partner) for w in waiters} == {id(u) for u in users}
        for q in extra:
            tasks.append(asyncio.create_task(q.run()))
            await _wait(lambda q=q: q.queued.is_set(), 5, f"{q.label} queued")
        original_order = [q.label for q in extra]

        talkers = waiters + users
        indeterminate = recovered = 0  # unacked at a kill / of those, already stored
        for kill in range(KILLS):
            await asyncio.sleep(RUN_SECONDS * (0.7 + 0.6 * random.random()))
            # a burst from everyone, and the kill lands while it is being processed
            await asyncio.gather(*(a.burst(3) for a in talkers))
            srv.kill()
            # Jepsen's indeterminate ops: sent, not acked when the server died
            stored_ops = {r[0] for r in db_rows(srv.db_path, "SELECT op_id FROM messages")}
            for a in talkers:
                in_doubt = set(a.pending)
                indeterminate += len(in_doubt)
                recovered += len(in_doubt & stored_ops)
            for a in [*talkers, *extra]:
                a.epoch = kill + 1
                a.ready.clear()
            await asyncio.sleep(0.2 + 0.3 * random.random())
            await asyncio.to_thread(srv.start)
            await _wait(
                lambda epoch=kill + 1: (
                    all(a.ready.is_set() for a in talkers)
                    and all(any(e == epoch for e, _ in q.locations) for q in extra)
                ),
                30,
                f"everyone back after kill {kill + 1}",
            )
        await asyncio.sleep(RUN_SECONDS)

        # drain: no new messages, everything unacked gets acked
        for a in talkers:
            a.talk = False
        await _wait(lambda: all(not a.pending for a in talkers), 30, "all acks")
        await asyncio.sleep(0.5)
        # the final resume: everyone reconnects with last_id and collects what it missed
        for a in talkers:
            a.ready.clear()
            await a.reconnect()
        await _wait(
            lambda: all(a.ready.is_set() for a in talkers),
            30,
            "the final resume",
            lambda: [(a.label, a.recent) for a in talkers if not a.ready.is_set()][:3],
        )
        await asyncio.sleep(1.0)
    finally:
        for a in [*waiters, *users, *extra]:
            a.stop = True
            if a.ws is not None:
                with contextlib.suppress(Exception):
                    await a.ws.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if FAILURES:
        raise FAILURES[0]

    # ---------------------------------------------------------------- the check
    rows = db_rows(
        srv.db_path,
        "SELECT id, conversation_id, sender_id, receiver_id, payload, op_id FROM messages",
    )
    by_op = {(r[2], r[5]): r for r in rows}
    agent_of = {a.who.id: a for a in [*waiters, *users]}

    acked = 0
    acked_not_stored = 0
    ack_id_changed = 0
    for a in talkers:
        for op, ids in a.acks.items():
            acked += 1
            row = by_op.get((a.who.id, op))
            if row is None or row[0] != ids[0] or json.loads(row[4])["text"] != a.texts[op]:
                acked_not_stored += 1
            if len(set(ids)) > 1:
                ack_id_changed += 1
    text_count = Counter((r[2], json.loads(r[4])["text"]) for r in rows)
    stored_twice = sum(n - 1 for n in text_count.values() if n > 1)
    unknown = sum(1 for r in rows if r[2] not in agent_of or r[5] not in agent_of[r[2]].texts)

    # A resumed socket gets the replay of what came after its `last_id` and, from its
    # auth on, live messages too: the two may overlap (a message committed while the
    # replay reads is sent both ways) and interleave. Clients dedupe and sort by id, so
    # that is allowed in a session that began with a replay, and nowhere else: never
    # twice across sessions (each resumes after the newest id it got), never out of
    # order or twice on a socket that had no replay.
    undelivered = 0
    duplicate_deliveries = 0
    out_of_order = 0
    twice_across_sessions = 0
    disorder_without_replay = 0
    for a in talkers:
        got = Counter(a.received)
        duplicate_deliveries += sum(n - 1 for n in got.values())
        sessions_of: dict[str, set[int]] = {}
        for session, mid in a.deliveries:
            sessions_of.setdefault(mid, set()).add(session)
        twice_across_sessions += sum(1 for s in sessions_of.values() if len(s) > 1)
        highest: dict[int, str] = {}
        seen: set[tuple[int, str]] = set()
        for session, mid in a.deliveries:
            again = (session, mid) in seen
            late = not again and mid < highest.get(session, "")
            out_of_order += late
            if (again or late) and session not in a.replaying:
                disorder_without_replay += 1
            seen.add((session, mid))
            highest[session] = max(highest.get(session, ""), mid)
    received_by = {a.who.id: set(a.received) for a in talkers}
    for r in rows:
        if r[0] not in received_by.get(r[3], set()):
            undelivered += 1

    conversations_lost = 0
    for w in waiters:
        assert w.partner is not None
        u = w.partner
        convs = db_rows(
            srv.db_path,
            "SELECT id, waiter_id, closed_at FROM conversations WHERE user_id = ?",
            u.who.id,
        )
        msg_convs = {r[1] for r in rows if u.who.id in (r[2], r[3])}
        ok = len(convs) == 1 and convs[0][1] == w.who.id and convs[0][2] is None
        if not ok or msg_convs != {convs[0][0]} or u.lost or w.lost:
            conversations_lost += 1
    queue_reordered = 0
    for epoch in range(1, KILLS + 1):
        last = {}
        for q in extra:
            for e, loc in q.locations:
                if e == epoch:
                    last[q.label] = loc
        order = sorted(last, key=lambda label: last[label])
        if order != original_order or sorted(last.values()) != list(range(QUEUED)):
            queue_reordered += 1
    queue_lost = sum(q.lost for q in extra)

    report = {
        "kills": KILLS,
        "messages_stored": len(rows),
        "acked": acked,
        "acked_but_not_stored": acked_not_stored,
        "ack_id_changed_on_resend": ack_id_changed,
        "stored_twice": stored_twice,
        "stored_unknown": unknown,
        "stored_but_never_delivered": undelivered,
        "conversations_lost": conversations_lost,
        "queue_reordered": queue_reordered,
        "queue_places_lost": queue_lost,
        "info_ops_resent": sum(1 for a in talkers for n in a.sends.values() if n > 1),
        "info_unacked_at_a_kill": indeterminate,
        "info_of_which_already_stored": recovered,
        "delivered_in_two_sessions": twice_across_sessions,
        "twice_or_out_of_order_without_a_replay": disorder_without_replay,
        "info_duplicate_deliveries_during_a_replay": duplicate_deliveries,
        "info_out_of_order_deliveries_during_a_replay": out_of_order,
        "info_new_connection_with_empty_from": sum(w.empty_from for w in waiters),
        "info_sessions": sum(a.sessions for a in [*talkers, *extra]),
        "info_error_statuses": dict(sum((a.refused for a in talkers), Counter())),
    }
    print("JEPSEN-STYLE CHECK:", json.dumps(report))
    assert "Traceback" not in "".join(
        p.read_text(errors="replace") for p in srv.data_dir.glob("server-*.std*")
    )
    assert acked == sum(len(a.texts) for a in talkers), "some messages were never acked"
    assert report["acked_but_not_stored"] == 0, report
    assert report["ack_id_changed_on_resend"] == 0, report
    assert report["stored_twice"] == 0, report
    assert report["stored_unknown"] == 0, report
    assert report["stored_but_never_delivered"] == 0, report
    assert report["conversations_lost"] == 0, report
    assert report["queue_reordered"] == 0, report
    assert report["queue_places_lost"] == 0, report
    assert report["delivered_in_two_sessions"] == 0, report
    assert report["twice_or_out_of_order_without_a_replay"] == 0, report
