"""Fuzz the frame handler of a live server with hypothesis-generated frames.

Each generated frame goes through an authenticated user socket that is in a
conversation. After it the fuzzer sends a sentinel message (a valid
`message_text` with op_id `sentinel-N`); everything the socket receives
before the sentinel's ack is the server's answer to the fuzzed frame (the
gateway handles a socket's frames in order and the writer acks in order).

Per frame: exactly one answer (an ack, a reply or one `error` with a status
of section 3), or none for a valid `typing`/`read` (forwarded to the waiter),
or the close code 1009 for a frame over 64 KiB. At the end: no traceback in
the server's logs, a second pair kept chatting all along, and every stored
message was acked and is valid.

CI: 2,000 frames (plus the sentinels). KEFU_SLOW_TESTS=1: 20,000.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from support.client import close_code, pair, person

from .conftest import SLOW, server_logs
from .wire import db_rows, token_of

pytestmark = [
    pytest.mark.timeout(1800 if SLOW else 150),
    pytest.mark.filterwarnings("ignore:connect.. must be used as a context manager"),
]

EXAMPLES = 20_000 if SLOW else 2_000
MAX_FRAME = 65536
STATUSES = {100000, 100001, 100002, 100006, 999999, 0}

# ------------------------------------------------------------------ strategies
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
any_json = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
TYPES = [
    "auth", "connect", "disconnect", "message_text", "message_image", "get_history", "rate",
    "typing", "read", "ready", "unready", "transfer", "get_history_session",
    "", "MESSAGE_TEXT", "message_text ", "message_texts", "error", "message_text_success",
]  # fmt: skip
OP_POOL = [f"pool-op-{i}" for i in range(6)]  # reused op_ids: duplicates and conflicts
long_text = st.integers(min_value=4090, max_value=4100).map(lambda n: "y" * n)
text_value = st.one_of(
    st.text(max_size=40), long_text, st.sampled_from(["", " ", "\n\t", "\u3000"]), any_json
)
URL_SEEDS = [
    "https://example.com/a.png", "http://example.com/b.gif", "javascript:alert(1)",
    "data:image/png;base64,AAAA", "//evil.example/x.png", "https://user:pw@example.com/x",
    "https://", "ftp://example.com/x.png", " https://example.com/x.png", "https://ex\x01.com/",
]  # fmt: skip
image_value = st.one_of(
    st.sampled_from(URL_SEEDS),
    st.text(max_size=40),
    st.text(max_size=30).map(lambda s: "https://example.com/" + s),
    st.integers(min_value=2030, max_value=2060).map(lambda n: "https://e.com/" + "a" * n),
    any_json,
)


def _obj(key: str, good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`{key: good-or-anything}`, or anything at all."""
    return st.one_of(st.fixed_dictionaries({key: st.one_of(good, any_json)}), any_json)


def _payload_for(kind: str) -> st.SearchStrategy[Any]:
    payloads: dict[str, st.SearchStrategy[Any]] = {
        "auth": st.fixed_dictionaries({"token": st.one_of(st.text(max_size=60), any_json)}),
        "message_text": st.one_of(st.fixed_dictionaries({"text": text_value}), any_json),
        "message_image": st.one_of(st.fixed_dictionaries({"image": image_value}), any_json),
        "get_history": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "before": st.one_of(st.text(max_size=40), any_json),
                    "limit": st.one_of(st.integers(-5, 200), any_json),
                    "user_id": st.text(max_size=20),
                },
            ),
            any_json,
        ),
        "rate": _obj("rate", st.integers(-2, 8)),
        "typing": _obj("typing", st.booleans()),
        "read": _obj("id", st.text(max_size=40)),
    }
    return payloads.get(kind, any_json)


def _near_valid(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"type": st.just(kind)},
        optional={
            "op_id": st.one_of(st.uuids().map(str), st.sampled_from(OP_POOL), any_json),
            "to": st.one_of(st.uuids().map(str), any_json),
            "payload": _payload_for(kind),
            "extra": any_json,
        },
    )


def _noise(size: int, seed: int) -> bytes:
    """`size` pseudo-random bytes from `seed` (no `random`: hypothesis owns randomness)."""
    return hashlib.shake_256(seed.to_bytes(8, "big")).digest(size)


def _big_text(args: tuple[int, int]) -> str:
    size, seed = args
    alphabet = 'abc xyz{}[]",:\\0123é中😀\u0000\u001f'
    return "".join(alphabet[b % len(alphabet)] for b in _noise(size, seed))


def _big_bytes(args: tuple[int, int]) -> bytes:
    size, seed = args
    return _noise(size, seed)


valid_messages = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("message_text"),
            "op_id": st.one_of(st.uuids().map(str), st.sampled_from(OP_POOL)),
            "payload": st.fixed_dictionaries({"text": st.text(min_size=1, max_size=80)}),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("message_image"),
            "op_id": st.one_of(st.uuids().map(str), st.sampled_from(OP_POOL)),
            "payload": st.fixed_dictionaries({"image": st.sampled_from(URL_SEEDS)}),
        }
    ),
)
sizes = st.one_of(st.integers(0, 200), st.integers(60_000, 70_000), st.integers(65_530, 65_540))
frames = st.one_of(
    valid_messages.map(lambda f: ("text", json.dumps(f))),
    st.sampled_from(TYPES).flatmap(_near_valid).map(lambda f: ("text", json.dumps(f))),
    st.sampled_from(TYPES)
    .flatmap(_near_valid)
    .map(lambda f: ("text", json.dumps(f, ensure_ascii=False))),
    any_json.map(lambda v: ("text", json.dumps(v))),
    st.text(max_size=300).map(lambda s: ("text", s)),
    st.tuples(sizes, st.integers(0, 2**32)).map(lambda a: ("text", _big_text(a))),
    st.tuples(sizes, st.integers(0, 2**32)).map(lambda a: ("bytes", _big_bytes(a))),
    st.binary(max_size=300).map(lambda b: ("bytes", b)),
)


# ------------------------------------------------------------------ validity
def valid_stored(kind: str, payload: dict[str, Any]) -> bool:
    """Independent check of what may be stored (protocol 4.2)."""
    if kind == "message_text":
        text = payload.get("text")
        return (
            set(payload) == {"text"}
            and isinstance(text, str)
            and bool(text.strip())
            and (len(text) <= 4096)
        )
    if kind == "message_image":
        url = payload.get("image")
        if set(payload) != {"image"} or not isinstance(url, str) or len(url) > 2048:
            return False
        if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            return False
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.username
    return False


# ------------------------------------------------------------------ the socket side
def _open(url: str) -> ClientConnection:
    return connect(url, compression=None, max_size=None, proxy=None, open_timeout=5)


class Side:
    """A waiter socket read by a thread, counting what reaches it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                with self.lock:
                    self.frames.append(json.loads(raw))
        except ConnectionClosed:
            pass

    def latest_user_socket(self, user_id: str, timeout: float = 5) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for f in reversed(self.frames):
                    if f["type"] == "new_connection" and f["payload"]["id"] == user_id:
                        return str(f["from"])
            time.sleep(0.01)
        raise AssertionError("no new_connection")

    def count(self, kind: str) -> int:
        with self.lock:
            return sum(1 for f in self.frames if f["type"] == kind)


def _auth(ws: ClientConnection, token: str) -> dict[str, Any]:
    ws.send(json.dumps({"type": "auth", "payload": {"token": token}}))
    frame = json.loads(ws.recv(timeout=5))
    assert frame["type"] == "auth_success", frame
    return frame


def _read_until(ws: ClientConnection, pred: Any, timeout: float = 5) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        got.append(frame)
        if pred(frame):
            return got


class Fuzzer:
    def __init__(self, srv: Any) -> None:
        self.srv = srv
        self.user_url = srv.ws_url("/v1/ws/connect/user")
        self.waiter_p, self.user_p = person("waiter"), person("user")
        self.user_token = token_of(self.user_p)
        self.waiter = _open(srv.ws_url("/v1/ws/connect/waiter"))
        _auth(self.waiter, token_of(self.waiter_p))
        self.waiter.send(json.dumps({"type": "ready"}))
        assert json.loads(self.waiter.recv(timeout=5))["type"] == "ready"
        self.side = Side(self.waiter)
        self.user = _open(self.user_url)
        _auth(self.user, self.user_token)
        self.connect()
        self.sent = 0
        self.sentinels = 0
        self.acked: dict[str, tuple[str, Any]] = {}  # id -> (type, payload) for fuzz frames
        self.sentinel_ids: set[str] = set()
        self.outcomes: Counter[str] = Counter()
        self.silent = 0  # frames with no answer (valid typing/read)
        self.problems: list[str] = []
        self.history: list[tuple[str, int, str]] = []  # the last frames sent, for failures

    def connect(self) -> None:
        self.user.send(json.dumps({"type": "connect"}))
        _read_until(self.user, lambda f: f["type"] == "connect_success")

    def reopen(self) -> None:
        """After a close: a new socket for the same user, resumed within the grace."""
        self.user = _open(self.user_url)
        _auth(self.user, self.user_token)
        _read_until(self.user, lambda f: f["type"] == "connect_success")

    def one(self, kind: str, data: str | bytes) -> None:
        self.sent += 1
        size = len(data.encode() if isinstance(data, str) else data)
        self.history = [*self.history[-4:], (kind, size, repr(data[:120]))]
        self.sentinels += 1
        sentinel_op = f"sentinel-{self.sentinels}"
        sentinel = {"type": "message_text", "op_id": sentinel_op, "payload": {"text": "ping"}}
        try:
            self.user.send(data)
            self.user.send(json.dumps(sentinel))
            got = _read_until(self.user, lambda f: f.get("op_id") == sentinel_op)
        except ConnectionClosed as exc:
            code = close_code(exc)
            if size > MAX_FRAME and code in (1009, None):
                # None: the server sent 1009 and closed while the client was still
                # writing the rest of the frame; the kernel's RST discarded the close
                # frame (uvicorn does not linger after a protocol error)
                self.outcomes["closed 1009" if code else "reset after 1009"] += 1
                self.reopen()
                return
            raise AssertionError(
                f"closed with {code} after a {size}-byte {kind} frame; last frames: {self.history}"
            ) from None
        if size > MAX_FRAME:
            self.problems.append(f"{size}-byte frame was not closed with 1009")
        end = got.pop()
        if end["type"] == "message_text_success":
            self.sentinel_ids.add(end["id"])
        elif end["type"] != "not_connect":
            self.problems.append(f"sentinel answered with {end}")
        self.judge(data, got)
        if end["type"] == "not_connect" or any(f["type"] == "disconnected" for f in got):
            self.connect()  # the fuzzed frame ended the conversation: start a new one

    def judge(self, data: str | bytes, got: list[dict[str, Any]]) -> None:
        try:
            sent = json.loads(data)
        except ValueError:
            sent = None
        answers = [f for f in got if f["type"] not in ("connect_queue", "idle")]
        kinds = [f["type"] for f in answers]
        if kinds == ["rate_success", "disconnected"]:
            kinds = ["rate_success"]
        if not kinds:
            stype = sent.get("type") if isinstance(sent, dict) else None
            if stype in ("typing", "read"):
                self.silent += 1
                self.outcomes["forwarded " + stype] += 1
                return
            self.problems.append(f"no answer to {str(data)[:200]!r}")
            return
        if len(kinds) != 1:
            self.problems.append(f"{len(kinds)} answers {kinds} to {str(data)[:200]!r}")
            return
        frame = answers[0]
        kind = kinds[0]
        self.outcomes[kind if kind != "error" else f"error {frame['payload'].get('status')}"] += 1
        if kind == "error":
            payload = frame.get("payload") or {}
            if payload.get("status") not in STATUSES or not payload.get("message"):
                self.problems.append(f"bad error frame {frame}")
        op = sent.get("op_id") if isinstance(sent, dict) else None
        direct = ("error", "message_text_success", "message_image_success", "message_history")
        echoable = isinstance(op, str) and len(op) <= 128
        if kind in direct and echoable and frame.get("op_id") != op:
            self.problems.append(f"op_id {op!r} not echoed in {frame}")
        if kind in ("message_text_success", "message_image_success"):
            assert isinstance(sent, dict)
            self.acked[frame["id"]] = (kind.removesuffix("_success"), frame["payload"])

    def other_pair_works(self, other_user: ClientConnection, other_waiter: ClientConnection,
                         tick: int) -> None:  # fmt: skip
        op = f"other-{tick}"
        other_user.send(json.dumps({"type": "message_text", "op_id": op, "payload": {"text": op}}))
        ack = _read_until(other_user, lambda f: f.get("op_id") == op)[-1]
        assert ack["type"] == "message_text_success", ack
        got = _read_until(other_waiter, lambda f: f["type"] == "message_text")[-1]
        assert got["id"] == ack["id"], (got, ack)


def run_fuzz(srv: Any) -> Fuzzer:
    fz = Fuzzer(srv)
    # a second pair that must keep working all along
    ow_p, ou_p = person("waiter"), person("user")
    other_waiter = _open(srv.ws_url("/v1/ws/connect/waiter"))
    _auth(other_waiter, token_of(ow_p))
    other_waiter.send(json.dumps({"type": "ready"}))
    other_user = _open(fz.user_url)
    _auth(other_user, token_of(ou_p))
    other_user.send(json.dumps({"type": "connect"}))
    _read_until(other_user, lambda f: f["type"] == "connect_success")
    tick = [0]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the server has state
        suppress_health_check=list(HealthCheck),
    )
    @given(frame=frames)
    @example(frame=("bytes", b'"\x81"'))  # found by this fuzzer: invalid UTF-8 in a binary frame
    @example(frame=("bytes", b'{"type": "message_text", "payload": {"text": "\x81"}}'))
    def fuzz(frame: tuple[str, str | bytes]) -> None:
        kind, data = frame
        fz.one(kind, data)
        tick[0] += 1
        if tick[0] % 100 == 0:
            fz.other_pair_works(other_user, other_waiter, tick[0])
        assert not fz.problems, fz.problems[:5]

    try:
        fuzz()
        fz.other_pair_works(other_user, other_waiter, -1)
    finally:
        for ws in (fz.user, fz.waiter, other_user, other_waiter):
            ws.close()
    return fz


async def test_fuzzed_frames_each_get_one_answer(kefu_server: Any) -> None:
    import asyncio

    srv = kefu_server(resume_grace=30, log_level="info")
    fz = await asyncio.to_thread(run_fuzz, srv)

    logs = server_logs(srv)
    assert "Traceback" not in logs, logs[-3000:]
    assert "Exception in ASGI" not in logs
    assert srv.alive()

    # what is stored: exactly the acked fuzz messages, each valid, and the sentinels
    rows = db_rows(
        srv.db_path,
        "SELECT m.id, m.type, m.payload FROM messages m JOIN accounts a ON a.id = m.sender_id"
        " WHERE a.id = ?",
        fz.user_p.id,
    )
    stored = {r[0]: (r[1], json.loads(r[2])) for r in rows}
    fuzz_rows = {k: v for k, v in stored.items() if k not in fz.sentinel_ids}
    invalid = [v for v in fuzz_rows.values() if not valid_stored(v[0], v[1])]
    not_acked = set(fuzz_rows) - set(fz.acked)
    acked_missing = set(fz.acked) - set(fuzz_rows)
    delivered = fz.side.count("message_text") + fz.side.count("message_image")
    print(
        "FUZZ:",
        json.dumps(
            {
                "frames": fz.sent,
                "sentinels": fz.sentinels,
                "outcomes": dict(fz.outcomes.most_common()),
                "stored_fuzz_messages": len(fuzz_rows),
                "invalid_stored": len(invalid),
                "stored_not_acked": len(not_acked),
                "acked_not_stored": len(acked_missing),
                "delivered_to_waiter": delivered,
            }
        ),
    )
    assert fz.sent >= EXAMPLES
    assert not invalid, invalid[:5]
    assert not not_acked and not acked_missing
    # the waiter got every stored message once or more (duplicates are re-acks of an op_id)
    assert delivered >= len(rows)
    forwarded = fz.side.count("typing") + fz.side.count("read")
    assert forwarded == fz.silent, (forwarded, fz.silent)


INVALID_UTF8 = [
    b'"\x81"',
    b'{"type": "message_text", "payload": {"text": "caf\xe9"}}',
    b'{"type": "connect", "op_id": "\xff"}',
    b'{"type": "x\x81"}',
]


async def test_binary_frames_with_invalid_utf8_get_an_error(kefu_server: Any) -> None:
    """Found by the fuzzer: these crashed the socket's handler (UnicodeDecodeError out of
    protocol/frames.py decode/loose, a traceback, the socket dropped without a close code)."""
    srv = kefu_server(log_level="info")
    w, u = await srv.waiter(), await srv.user()
    await pair(u, w)
    for raw in INVALID_UTF8:
        await u.send_raw(raw)
        err = await u.expect("error")
        assert err["payload"]["status"] == 100000, (raw, err)
    assert "Traceback" not in server_logs(srv)
