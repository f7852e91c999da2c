"""The admin API's conversations, live desk and statistics over real HTTP (`kefu serve`),
on SQLite and PostgreSQL.

One scripted session (a waiter who holds one conversation at a time, users
served, a user who leaves the queue, a rating, messages with the dates of
their acks) and then every endpoint checked against it: the list with its
filters and pages across the queue and the conversations, one conversation,
its transcript as JSON pages and as CSV, `/live` while users wait, and
`/stats` computed back from what the API itself shows (times are the
server's own: relations and recomputed values, no exact seconds).
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest

from support.api import (
    admin_token,
    api,
    backend,  # noqa: F401 - the fixture
    backend_settings,
    create_key,
    error_of,
    user_token,
)
from support.client import Client, pair, say
from support.servers import MakeServer, Server

pytestmark = pytest.mark.timeout(120)

TOLERANCE = 0.002  # seconds: the API rounds durations to milliseconds


@pytest.fixture
def srv(backend: str, make_server: MakeServer) -> Server:  # noqa: F811
    # `backend` first: its database is dropped after the server has stopped
    return make_server(max_users_per_waiter=1, **backend_settings(backend))


def seconds(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def eventually(
    what: str, read: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], timeout: float = 10
) -> Any:
    """Read until `ok` holds: the desk's records reach the database through the writer."""
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}; last: {value!r}"
        await asyncio.sleep(0.05)


async def all_pages(http: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        resp = await http.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"items", "next"}, body
        assert len(body["items"]) <= int(params.get("limit", 50)), body
        items += body["items"]
        cursor = body["next"]
        if cursor is None:
            return items
        assert body["items"], "a page with a next cursor is not empty"


@dataclass
class Sent:
    """A message as the session saw it: its ack (id, date) and what it said."""

    id: str
    date: str
    sender: Client
    type: str
    content: str


@dataclass
class Session:
    waiter: Client
    alice: Client  # served first, rates 5
    bob: Client  # queued behind alice, served when she rated, leaves
    carol: Client  # queued behind bob, leaves the queue
    erin: Client  # served at the end: an open conversation
    dave: Client  # queued at the end
    sent: dict[str, list[Sent]] = field(default_factory=dict)  # user's username -> messages


async def talk(session: Session, user: Client, lines: list[tuple[str, str]]) -> None:
    """Each line is (who, text): "u" the user, "w" the waiter; "img:" sends an image."""
    for who, text in lines:
        sender, receiver = (user, session.waiter) if who == "u" else (session.waiter, user)
        if text.startswith("img:"):
            url = text.removeprefix("img:")
            ack = await say(sender, receiver, image=url)
            kind, content = "message_image", url
        else:
            ack = await say(sender, receiver, text)
            kind, content = "message_text", text
        assert user.person is not None
        session.sent.setdefault(user.person.username, []).append(
            Sent(ack["id"], ack["date"], sender, kind, content)
        )


async def script(srv: Server) -> Session:
    waiter = await srv.waiter()
    alice, bob, carol = await srv.user(), await srv.user(), await srv.user()
    await pair(alice, waiter)
    for place, user in enumerate((bob, carol)):
        await user.send({"type": "connect"})
        await user.expect("connect_queue", payload={"location": place})
    session = Session(waiter, alice, bob, carol, alice, alice)
    await talk(
        session,
        alice,
        [
            ("u", "hello, my order is late"),
            ("w", '=HYPERLINK("http://evil.example")'),  # a formula: made safe in the CSV
            ("w", "img:https://cdn.example.com/label.png"),
            ("u", '-1 stars, just kidding, "thanks", bye'),
        ],
    )
    return session


async def served_next(session: Session) -> None:
    """alice rates 5 (bob is served), carol leaves the queue, bob talks and leaves."""
    alice, bob, carol, waiter = session.alice, session.bob, session.carol, session.waiter
    await alice.send({"type": "rate", "payload": {"rate": 5}})
    await alice.expect("rate_success")
    await alice.expect("disconnected")
    await bob.expect("connect_success", from_=waiter.uuid)
    await carol.expect("connect_queue", payload={"location": 0})
    await waiter.drain(("rate_user_success", "disconnected", "new_connection"))
    await carol.send({"type": "disconnect"})
    await carol.expect("disconnected")
    await talk(session, bob, [("u", "@bob here"), ("w", "+hi bob"), ("u", "ok")])
    await bob.send({"type": "disconnect"})
    await bob.expect("disconnected", from_=waiter.uuid)
    await waiter.expect("disconnected", from_=bob.uuid)


async def still_busy(srv: Server, session: Session) -> None:
    """erin is served (open conversation), dave waits in the queue."""
    session.erin, session.dave = await srv.user(), await srv.user()
    await pair(session.erin, session.waiter)
    await session.dave.send({"type": "connect"})
    await session.dave.expect("connect_queue", payload={"location": 0})
    await talk(session, session.erin, [("w", "hello erin")])


def profile(client: Client) -> dict[str, Any]:
    assert client.person is not None
    return client.person.profile()


def user_id(client: Client) -> str:
    assert client.person is not None
    return client.person.id


async def test_conversations_live_and_stats(srv: Server) -> None:
    key = create_key(srv, read_only=True)  # reading needs no more
    started = time.time()
    session = await script(srv)
    async with api(srv, key) as http:
        # -- while bob and carol wait: the queue in the list and in /live
        queued = await eventually(
            "bob and carol queued",
            lambda: all_pages(http, "/conversations", state="queued"),
            lambda items: len(items) == 2,
        )
        assert [q["user"] for q in queued] == [profile(session.bob), profile(session.carol)]
        for q in queued:
            assert q | {"user": None, "queued_at": None} == {
                "id": None,
                "state": "queued",
                "user": None,
                "waiter": None,
                "queued_at": None,
                "assigned_at": None,
                "closed_at": None,
                "close_reason": None,
                "rating": None,
            }
        assert seconds(queued[0]["queued_at"]) <= seconds(queued[1]["queued_at"])

        resp = await http.get("/live")
        assert resp.status_code == 200, resp.text
        live = resp.json()
        assert live["queued"] == 2
        assert [(q["position"], q["user"], q["online"]) for q in live["queue"]] == [
            (0, profile(session.bob), True),
            (1, profile(session.carol), True),
        ]
        as_of = seconds(live["as_of"])
        for q, listed in zip(live["queue"], queued, strict=True):
            assert q["queued_at"] == listed["queued_at"]
            # waiting is measured at the answer, which comes after the snapshot
            assert q["waiting"] >= as_of - seconds(q["queued_at"]) - TOLERANCE
            assert q["waiting"] <= time.time() - seconds(q["queued_at"]) + 1
        assert live["queue"][0]["waiting"] >= live["queue"][1]["waiting"]
        assert live["waiters"] == [
            {
                "waiter": profile(session.waiter),
                "ready": True,
                "online": True,
                "load": 1,
                "capacity": 1,
            }
        ]

        await served_next(session)
        await still_busy(srv, session)

        # -- everything: dave (queued), then erin's, bob's and alice's conversations
        items = await eventually(
            "the whole session stored",
            lambda: all_pages(http, "/conversations"),
            lambda items: [i["state"] for i in items] == ["queued", "open", "closed", "closed"],
        )
        dave_q, erin_c, bob_c, alice_c = items
        assert [i["user"] for i in items] == [
            profile(session.dave),
            profile(session.erin),
            profile(session.bob),
            profile(session.alice),
        ]
        assert dave_q["id"] is None and dave_q["waiter"] is None
        for c in (erin_c, bob_c, alice_c):
            assert c["waiter"] == profile(session.waiter)
            assert c["id"] and seconds(c["queued_at"]) <= seconds(c["assigned_at"])
        assert (alice_c["close_reason"], alice_c["rating"]) == ("rated", 5)
        assert (bob_c["close_reason"], bob_c["rating"]) == ("user_left", None)
        assert (erin_c["closed_at"], erin_c["close_reason"]) == (None, None)
        assert seconds(alice_c["closed_at"]) <= seconds(bob_c["assigned_at"]) + TOLERANCE
        assert seconds(bob_c["assigned_at"]) <= seconds(bob_c["closed_at"])
        # bob queued right after alice was served, and waited until she rated
        assert seconds(bob_c["queued_at"]) >= seconds(alice_c["assigned_at"]) - TOLERANCE
        assert seconds(bob_c["assigned_at"]) >= seconds(alice_c["closed_at"]) - TOLERANCE

        # every page size gives the same items, across the queue and the conversations
        for limit in (1, 2, 3):
            assert await all_pages(http, "/conversations", limit=limit) == items

        # -- filters
        async def listed(**params: Any) -> list[dict[str, Any]]:
            return await all_pages(http, "/conversations", **params)

        assert await listed(state="open") == [erin_c]
        assert await listed(state="closed") == [bob_c, alice_c]
        assert await listed(state="queued") == [dave_q]
        assert await listed(waiter_id=user_id(session.waiter)) == [erin_c, bob_c, alice_c]
        assert await listed(user_id=user_id(session.alice)) == [alice_c]
        assert await listed(user_id=user_id(session.dave)) == [dave_q]
        assert await listed(user_id=user_id(session.carol)) == []  # she left: nothing stored
        # since / until bound the opening (arrival for the queue); both forms of time
        bob_opened = seconds(bob_c["assigned_at"])
        assert await listed(since=bob_c["assigned_at"], state="closed") == [bob_c]
        assert await listed(until=bob_c["assigned_at"]) == [alice_c]
        assert await listed(since=f"{bob_opened:.6f}", until=erin_c["assigned_at"]) == [bob_c]
        assert await listed(since=str(int(started) - 60), limit=2) == items

        # -- one conversation, and its transcript
        resp = await http.get(f"/conversations/{alice_c['id']}")
        assert resp.status_code == 200, resp.text
        assert resp.json() == {**alice_c, "message_count": 4}
        resp = await http.get(f"/conversations/{erin_c['id']}")
        assert resp.json() == {**erin_c, "message_count": 1}
        assert session.alice.person is not None and session.bob.person is not None
        for conv, who in ((alice_c, session.alice), (bob_c, session.bob)):
            assert who.person is not None
            sent = session.sent[who.person.username]
            messages = await all_pages(http, f"/conversations/{conv['id']}/messages", limit=3)
            assert messages == [
                {
                    "id": s.id,
                    "date": s.date,
                    "type": s.type,
                    "sender": profile(s.sender),
                    "receiver_id": user_id(session.waiter if s.sender is who else who),
                    "text": s.content if s.type == "message_text" else None,
                    "image": s.content if s.type == "message_image" else None,
                    "erased": False,
                }
                for s in sent
            ]
            resp = await http.get(
                f"/conversations/{conv['id']}/messages", headers={"Accept": "text/csv"}
            )
            assert resp.status_code == 200, resp.text
            assert resp.headers["content-type"].startswith("text/csv")
            assert "attachment" in resp.headers["content-disposition"]
            rows = list(csv.reader(io.StringIO(resp.text)))
            assert rows[0] == ["id", "date", "sender_id", "sender_username", "type", "content"]
            expected = []
            for s in sent:
                assert s.sender.person is not None
                cells = [s.id, s.date, s.sender.person.id, s.sender.person.username, s.type]
                content = s.content
                if content[:1] in ("=", "+", "-", "@"):
                    content = "'" + content  # a spreadsheet shows it as text
                expected.append([*cells, content])
            assert rows[1:] == expected
        # JSON wins a tie, and is the default
        resp = await http.get(
            f"/conversations/{bob_c['id']}/messages",
            headers={"Accept": "text/csv, application/json"},
        )
        assert resp.headers["content-type"].startswith("application/json")
        resp = await http.get(
            f"/conversations/{bob_c['id']}/messages",
            headers={"Accept": "application/json;q=0.5, text/csv"},
        )
        assert resp.headers["content-type"].startswith("text/csv")

        # -- /live now: dave waits, the waiter holds erin
        live = (await http.get("/live")).json()
        assert [(q["user"], q["queued_at"]) for q in live["queue"]] == [
            (profile(session.dave), dave_q["queued_at"])
        ]
        assert live["waiters"][0]["load"] == 1

        # -- /stats, recomputed from what the API showed
        stats = await eventually(
            "the departures counted",
            lambda: stats_of(http, since=str(int(started) - 60)),
            lambda s: s["left_while_queued"] == 1,
        )
        conversations = [erin_c, bob_c, alice_c]
        waits = [seconds(c["assigned_at"]) - seconds(c["queued_at"]) for c in conversations]
        handling = [seconds(c["closed_at"]) - seconds(c["assigned_at"]) for c in (bob_c, alice_c)]
        replies = []
        for c, who in ((erin_c, session.erin), (bob_c, session.bob), (alice_c, session.alice)):
            assert who.person is not None
            first = next(s for s in session.sent[who.person.username] if s.sender is not who)
            replies.append(seconds(first.date) - seconds(c["assigned_at"]))
        assert stats["conversations"] == 3
        assert stats["served"] == 3  # alice, bob and erin; dave still waits
        assert stats["left_while_queued"] == 1  # carol
        check_durations(stats["waiting"], waits)
        check_durations(stats["handling"], handling)
        check_durations(stats["first_reply"], replies)
        assert stats["ratings"] == {
            "count": 1,
            "mean": 5.0,
            "stars": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1},
        }
        # a period before the session: nothing
        empty = await stats_of(http, since=str(int(started) - 7200), until=str(int(started) - 60))
        assert (empty["conversations"], empty["served"], empty["left_while_queued"]) == (0, 0, 0)
        assert empty["waiting"] == {"count": 0, "mean": None, "p50": None, "p90": None}
        assert empty["ratings"]["mean"] is None
        # the defaults: the last day, up to now
        default = await stats_of(http)
        assert default["conversations"] == 3
        assert 86_400 - 1 < seconds(default["until"]) - seconds(default["since"]) < 86_400 + 1
        # any period: since the Unix epoch, up to a year from now
        ever = await stats_of(http, since="0", until=str(int(time.time()) + 366 * 86_400))
        assert {k: v for k, v in ever.items() if k not in ("since", "until")} == {
            k: v for k, v in stats.items() if k not in ("since", "until")
        }


async def stats_of(http: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    resp = await http.get("/stats", params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def check_durations(got: dict[str, Any], values: list[float]) -> None:
    """count, mean and nearest-rank p50 / p90 of `values`, to the API's rounding."""
    ordered = sorted(values)
    assert got["count"] == len(ordered), (got, ordered)
    assert got["mean"] == pytest.approx(sum(ordered) / len(ordered), abs=TOLERANCE), (got, ordered)
    p50 = ordered[max(1, -(-len(ordered) * 50 // 100)) - 1]
    p90 = ordered[max(1, -(-len(ordered) * 90 // 100)) - 1]
    assert got["p50"] == pytest.approx(p50, abs=TOLERANCE), (got, ordered)
    assert got["p90"] == pytest.approx(p90, abs=TOLERANCE), (got, ordered)
    assert all(v >= -TOLERANCE for v in ordered), ordered


async def test_bad_input_and_callers_not_allowed(srv: Server) -> None:
    key = create_key(srv)
    paths = ["/conversations", "/conversations/1", "/conversations/1/messages", "/live", "/stats"]
    # no credentials: 401; a token of a user or a waiter: 403
    async with api(srv) as http:
        for path in paths:
            error_of(await http.get(path), 401)
    for role in ("user", "waiter"):
        async with api(srv, user_token(role)) as http:
            for path in paths:
                assert "admin" in error_of(await http.get(path), 403)
    # an admin account's token may read
    async with api(srv, admin_token()) as http:
        assert (await http.get("/live")).status_code == 200
    async with api(srv, key) as http:
        for params in (
            {"state": "gone"},
            {"limit": "0"},
            {"limit": "201"},
            {"cursor": "not-a-cursor"},
            {"cursor": "WyJ4IiwxLDJd"},  # ["x",1,2]: a cursor of no known kind
            {"since": "yesterday"},
            {"since": "2026-12-01"},  # a date without a time and a zone
            {"since": "2026-12-01T08:00:00"},  # no zone
            {"until": "-5"},
            {"since": "1800000000", "until": "1700000000"},  # since after until
        ):
            error_of(await http.get("/conversations", params=params), 422)
        for params in (
            {"since": "soon"},
            {"since": "1700000000", "until": "1700000000"},
        ):
            error_of(await http.get("/stats", params=params), 422)
        error_of(await http.get("/conversations/00000000000000000001"), 404)
        error_of(await http.get("/conversations/00000000000000000001/messages"), 404)
        resp = await http.get(
            "/conversations/00000000000000000001/messages", headers={"Accept": "text/csv"}
        )
        error_of(resp, 404)
        error_of(await http.get("/conversations/" + "9" * 65), 422)
        # these are read-only resources
        error_of(await http.post("/conversations", json={}), 405)
        error_of(await http.delete("/live"), 405)
    # the schema documents both forms of time
    async with api(srv) as http:
        schema = (await http.get("/openapi.json")).json()
    listing = schema["paths"]["/conversations"]["get"]["parameters"]
    since = next(p for p in listing if p["name"] == "since")
    assert "RFC 3339" in since["description"] and "Unix seconds" in since["description"]
