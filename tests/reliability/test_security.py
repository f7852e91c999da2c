"""The security matrix: Origin, tokens, authorization between accounts, image URLs.

Every refusal must leave no trace: no account row for a refused token, no
message row and no delivery for a refused message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from support import logscan
from support.client import SECRET, Client, Person, mint, new_op_id, pair, person, say
from support.logscan import remember
from support.servers import BASE_SETTINGS, Server

from .conftest import server_logs
from .wire import connect_ws, count_rows, db_rows

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

ALLOWED = "https://app.example.com"


@pytest.fixture(scope="module")
def _sec_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("security"),
        {**BASE_SETTINGS, "allowed_origins": ALLOWED, "log_level": "info"},
    )
    with logscan.recording() as secrets:
        srv.start()
        yield srv
        srv.stop()
    logscan.check([srv.data_dir], secrets)


@pytest.fixture
async def sec(_sec_server: Server) -> AsyncIterator[Server]:
    yield _sec_server
    await _sec_server.close_clients()
    assert "Traceback" not in server_logs(_sec_server)


# ------------------------------------------------------------------ Origin
ORIGINS = {
    "allowed": (ALLOWED, True),
    "allowed, mixed case (same origin, RFC 6454)": ("https://APP.Example.com", True),
    "missing (not a browser)": (None, True),
    "evil": ("https://evil.example", False),
    "allowed as a prefix of a longer host": ("https://app.example.com.evil.com", False),
    "null (sandboxed frame, file:)": ("null", False),
    "http instead of https": ("http://app.example.com", False),
    "another port": ("https://app.example.com:8443", False),
}


@pytest.mark.parametrize("case", list(ORIGINS))
async def test_origin_is_checked_before_the_upgrade(sec: Server, case: str) -> None:
    origin, ok = ORIGINS[case]
    url = sec.ws_url("/v1/ws/connect/user")
    if ok:
        ws = await connect_ws(url, origin=origin)
        await ws.close()
        return
    with pytest.raises(InvalidStatus) as info:
        await connect_ws(url, origin=origin)
    assert info.value.response.status_code == 403


async def test_same_host_origin_is_allowed_only_on_its_own_port(sec: Server) -> None:
    ws = await connect_ws(sec.ws_url("/v1/ws/connect/waiter"), origin=sec.url)
    await ws.close()
    with pytest.raises(InvalidStatus):
        await connect_ws(sec.ws_url("/v1/ws/connect/waiter"), origin="http://127.0.0.1:1")


# ------------------------------------------------------------------ tokens
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_jwt(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = b"" if key is None else hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(sig)}"


PUBLIC_PEM = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf\n"
    b"9Cnzj4p4WGeKLs1Pt8QuKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n"
    b"-----END PUBLIC KEY-----\n"
)


def bad_tokens() -> dict[str, tuple[str, Person]]:
    """11 tokens kefu must refuse, each for a fresh account that must never be created."""
    now = int(time.time())
    out: dict[str, tuple[str, Person]] = {}

    def add(name: str, make: Any) -> None:
        who = person("waiter" if "waiter" in name else "user")
        out[name] = (make(who), who)

    add("alg none", lambda p: _raw_jwt({"alg": "none", "typ": "JWT"}, p.claims(), None))
    add("alg None, signed", lambda p: _raw_jwt({"alg": "None"}, p.claims(), SECRET.encode()))
    add("HS256 keyed with an RSA public key", lambda p: _raw_jwt(
        {"alg": "HS256", "typ": "JWT"}, p.claims(), PUBLIC_PEM))  # fmt: skip
    add("RS256 header", lambda p: _raw_jwt({"alg": "RS256"}, p.claims(), SECRET.encode()))
    add("HS512 with the right secret", lambda p: mint(p.claims(), SECRET, "HS512"))
    add("expired", lambda p: mint({**p.claims(), "exp": now - 1}))
    add("not yet valid", lambda p: mint({**p.claims(), "nbf": now + 3600}))
    add("missing exp", lambda p: mint({k: v for k, v in p.claims().items() if k != "exp"}))

    def tampered(p: Person) -> str:
        good = mint(p.claims())
        head, _, sig = good.split(".")
        claims = {**p.claims(), "role": "admin"}
        return f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"

    add("tampered payload (role admin)", tampered)
    add("wrong secret", lambda p: p.token(secret="not-the-secret-" + "x" * 40))
    add("garbage", lambda p: "eyJ.garbage." + p.id)
    add("empty", lambda p: "")
    add("Bearer and nothing", lambda p: "Bearer ")
    add("role escalation to a role kefu does not know", lambda p: mint(
        {**p.claims(), "role": "root"}))  # fmt: skip
    add("waiter token without sub", lambda p: mint(
        {k: v for k, v in p.claims().items() if k != "sub"}))  # fmt: skip
    for token, _ in out.values():
        remember(token)
    return out


async def test_bad_tokens_are_refused_and_nothing_is_written(sec: Server) -> None:
    cases = bad_tokens()
    assert len(cases) >= 11
    accounts_before = count_rows(sec.db_path, "accounts")
    for name, (token, who) in cases.items():
        side = "waiter" if who.role == "waiter" else "user"
        c = await sec.open(side, f"bad token: {name}")
        op = new_op_id()
        await c.send({"type": "auth", "op_id": op, "payload": {"token": token}})
        err = await c.expect("error", op_id=op)
        assert err["payload"]["status"] == 999999, (name, err)
        # still not authenticated: nothing it asks for is done
        await c.send({"type": "connect" if side == "user" else "ready"})
        await c.expect_error(999999)
        await c.send({"type": "message_text", "payload": {"text": "sneaky " + name}})
        await c.expect_error(999999)
        await c.close()
        rows = db_rows(sec.db_path, "SELECT id FROM accounts WHERE id = ? OR username = ?",
                       who.id, who.username)  # fmt: skip
        assert rows == [], (name, rows)
    assert count_rows(sec.db_path, "accounts") == accounts_before
    status = await sec.status()
    assert status["data"]["online_user_num"] == 0


async def test_auth_failures_are_capped_then_1008(sec: Server) -> None:
    c = await sec.open("user")
    for _ in range(5):
        await c.send({"type": "auth", "payload": {"token": "nope"}})
        await c.expect_error(999999)
    await c.expect_closed(1008)


# ------------------------------------------------------------------ authorization
async def _two_pairs(srv: Server) -> tuple[Client, Client, Client, Client]:
    w1 = await srv.waiter(label="w1")
    u1 = await srv.user(label="u1")
    await pair(u1, w1)
    w2 = await srv.waiter(label="w2")
    u2 = await srv.user(label="u2")
    await pair(u2, w2)
    return w1, u1, w2, u2


def _messages_of(srv: Server, account: str) -> list[tuple[Any, ...]]:
    return db_rows(
        srv.db_path, "SELECT id FROM messages WHERE sender_id = ? OR receiver_id = ?",
        account, account,
    )  # fmt: skip


async def test_waiter_cannot_reach_a_user_it_does_not_serve(sec: Server) -> None:
    w1, u1, _w2, u2 = await _two_pairs(sec)
    assert u2.person is not None and w1.person is not None
    secret_text = f"for your eyes only {uuid.uuid4()}"
    remember(secret_text)
    attempts: list[dict[str, Any]] = [
        {"type": "message_text", "to": u2.uuid, "payload": {"text": secret_text}},
        {"type": "message_image", "to": u2.uuid,
         "payload": {"image": "https://example.com/x.png"}},
        {"type": "typing", "to": u2.uuid, "payload": {"typing": True}},
        {"type": "read", "to": u2.uuid, "payload": {"id": "1"}},
        {"type": "rate", "to": u2.uuid},
        {"type": "disconnect", "payload": {"uuid": u2.uuid}},
        {"type": "transfer", "payload": {"uuid": u2.uuid, "waiter_id": w1.person.id}},
        # a socket that is not a user's at all, and made-up ones
        {"type": "message_text", "to": _w2.uuid, "payload": {"text": secret_text}},
        {"type": "message_text", "to": str(uuid.uuid4()), "payload": {"text": secret_text}},
        {"type": "message_text", "to": u2.uuid, "from": u1.uuid,
         "payload": {"text": secret_text}},
    ]  # fmt: skip
    for frame in attempts:
        op = new_op_id()
        await w1.send({**frame, "op_id": op})
        err = await w1.expect("error", op_id=op)
        assert err["payload"]["status"] in (100002, 100001), (frame, err)
    await u2.expect_nothing(0.3)
    await _w2.expect_nothing(0.1)
    assert _messages_of(sec, u2.person.id) == []
    # both pairs still work
    await say(w1, u1, "still mine")
    await say(u2, _w2, "still here")


async def test_user_cannot_read_or_reach_another_user(sec: Server) -> None:
    w1, u1, w2, u2 = await _two_pairs(sec)
    assert u1.person is not None and u2.person is not None
    private = f"u2 private {uuid.uuid4()}"
    remember(private)
    await say(u2, w2, private)
    # get_history ignores a user_id: a user only ever reads its own history
    op = new_op_id()
    await u1.send({"type": "get_history", "op_id": op, "payload": {"user_id": u2.person.id}})
    hist = await u1.expect("message_history", op_id=op)
    parties = {(e["sender"]["id"], e["receiver"]["id"]) for e in hist["payload"]}
    assert all(u2.person.id not in p for p in parties)
    # a user's `to` is ignored: the message goes to its own waiter only
    ack = await u1.send_text("hello?", op_id=None)
    await u1.ws.send(json.dumps({"type": "message_text", "to": u2.uuid, "op_id": new_op_id(),
                                 "payload": {"text": "to u2?"}}))  # fmt: skip
    ack2 = await u1.expect("message_text_success")
    await w1.expect("message_text", id=ack["id"])
    got = await w1.expect("message_text", id=ack2["id"])
    assert got["from"] == u1.uuid
    await u2.expect_nothing(0.3)
    await w2.expect_nothing(0.1)
    # a user token does not open the waiter socket
    fake = await sec.open("waiter", "user-as-waiter")
    await fake.send({"type": "auth", "payload": {"token": u1.person.token()}})
    await fake.expect_error(100002)
    await fake.send({"type": "get_history", "payload": {"user_id": u2.person.id}})
    await fake.expect_error(999999)
    rows = db_rows(sec.db_path, "SELECT receiver_id FROM messages WHERE sender_id = ?",
                   u1.person.id)  # fmt: skip
    assert {r[0] for r in rows} == {w1.person.id if w1.person else ""}


# ------------------------------------------------------------------ image URLs
BAD_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.domain)",
    " javascript:alert(1)",
    "javascript&#58;alert(1)",
    "javascript%3Aalert(1)",
    "&#106;avascript:alert(1)",
    "data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "//evil.example/x.png",
    "http://user@evil.example/x.png",
    "https://user:pass@evil.example/x.png",
    "https://evil.example\\@good.example/x.png",
    " https://example.com/x.png",
    "\x01https://example.com/x.png",
    "https://example.com/x.png\x00",
    "https://example.com/x.png\n",
    "https://exa mple.com/x.png",
    "https://example.com/\tx.png",
    "\u00a0https://example.com/x.png",
    "https://example.com/x.png\u2028",
    "https://example.com/" + "a" * 3000,
    "file:///etc/passwd",
    "ftp://example.com/x.png",
    "https:example.com/x.png",
    "https://",
    "http:///x.png",
    "https://[::1/x.png",
    "blob:https://example.com/0d6b9f0e",
    "/relative/x.png",
    "x.png",
    "about:blank",
    "ws://example.com/x.png",
]


async def test_malicious_image_urls_are_refused(sec: Server) -> None:
    assert len(BAD_URLS) >= 30
    w, u = await sec.waiter(), await sec.user()
    await pair(u, w)
    assert u.person is not None
    for url in BAD_URLS:
        for sender, to in ((u, None), (w, u.uuid)):
            op = new_op_id()
            frame: dict[str, Any] = {"type": "message_image", "op_id": op,
                                     "payload": {"image": url}}  # fmt: skip
            if to is not None:
                frame["to"] = to
            await sender.send(frame)
            err = await sender.expect("error", op_id=op)
            assert err["payload"]["status"] == 100000, (url, err)
    await w.expect_nothing(0.2)
    await u.expect_nothing(0.1)
    assert _messages_of(sec, u.person.id) == []
    ok = await u.send_image("https://example.com/fine.png")
    await w.expect("message_image", id=ok["id"])


@pytest.mark.parametrize("url", [
    "https://exa\u200bmple.com/x.png",
    "https://\ufeffexample.com/x.png",
    "https://example.com/\u202egnp.exe",
])  # fmt: skip
async def test_invisible_characters_in_image_urls_are_refused(sec: Server, url: str) -> None:
    w, u = await sec.waiter(), await sec.user()
    await pair(u, w)
    op = new_op_id()
    await u.send({"type": "message_image", "op_id": op, "payload": {"image": url}})
    err = await u.expect("error", op_id=op)
    assert err["payload"]["status"] == 100000


def test_bad_url_list_has_no_duplicates() -> None:
    assert len(set(BAD_URLS)) == len(BAD_URLS)
