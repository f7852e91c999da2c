"""Test-side helpers for the end-to-end suite: accounts, tokens and a frame-checking client.

Everything here treats the server as a black box: it speaks the wire protocol of
`/work/shared/protocol.md` over real sockets and never imports `kefu`.

`Client.recv` checks the envelope of every server frame (`type`, `to` = this
socket's UUID and constant, `date` = RFC 3339 with fractional seconds in UTC,
`from` a UUID, `id` a fixed-width digit string), so every test checks those
rules on every frame it reads.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jwt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support.logscan import remember

SECRET = "kefu-e2e-test-secret-0123456789-abcdefghijklmnop"

DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+(Z|\+00:00)")
ID_RE = re.compile(r"\d+")
PROFILE_KEYS = ("id", "username", "nickname", "avatar")

# A frame type the server does not know: `Client.sync` sends it as a barrier.
BARRIER_TYPE = "kefu_test_barrier"

# Message ids are fixed-width: the first one seen fixes the width for the run.
_id_width: list[int] = []


def check_uuid(value: Any, what: str) -> str:
    assert isinstance(value, str), f"{what} is not a string: {value!r}"
    try:
        uuid.UUID(value)
    except ValueError:
        raise AssertionError(f"{what} is not a UUID: {value!r}") from None
    return value


def check_date(value: Any, what: str = "date") -> datetime:
    assert isinstance(value, str) and DATE_RE.fullmatch(value), (
        f"{what} is not RFC 3339 UTC with fractional seconds: {value!r}"
    )
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), f"{what} is not UTC: {value!r}"
    return parsed


def check_message_id(value: Any, what: str = "id") -> str:
    assert isinstance(value, str) and ID_RE.fullmatch(value), (
        f"{what} is not a string of digits: {value!r}"
    )
    if not _id_width:
        _id_width.append(len(value))
    assert len(value) == _id_width[0], (
        f"{what} {value!r} has width {len(value)}, earlier ids had {_id_width[0]}"
    )
    return value


def new_op_id() -> str:
    return str(uuid.uuid4())


# --------------------------------------------------------------------------- accounts


@dataclass
class Person:
    """An account of the host application; the server creates it on first token use."""

    id: str
    username: str
    role: str
    nickname: str | None
    avatar: str

    def claims(self, ttl: float = 3600, **extra: Any) -> dict[str, Any]:
        claims: dict[str, Any] = {"sub": self.id, "role": self.role, "username": self.username}
        if self.nickname is not None:
            claims["nickname"] = self.nickname
        if self.avatar:
            claims["avatar"] = self.avatar
        claims["exp"] = int(time.time() + ttl)
        claims.update(extra)
        return claims

    def token(self, secret: str = SECRET, ttl: float = 3600, **extra: Any) -> str:
        return mint(self.claims(ttl, **extra), secret)

    def profile(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "nickname": self.nickname,
            "avatar": self.avatar,
        }


def mint(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    """A signed token; remembered as a secret no server log may hold (`support.logscan`)."""
    token = jwt.encode(claims, secret, algorithm=algorithm)
    remember(token)
    return token


def person(role: str = "user", *, nickname: str | None = "", avatar: str | None = None) -> Person:
    """A fresh, unique account. nickname "" means a generated one, None means none."""
    tag = uuid.uuid4().hex[:10]
    if nickname == "":
        nickname = f"Nick {role} {tag[:4]}"
    if avatar is None:
        avatar = f"https://example.com/avatars/{tag}.png"
    return Person(
        id=f"{role}-{tag}", username=f"{role}_{tag}", role=role, nickname=nickname, avatar=avatar
    )


def assert_profile(payload: Any, who: Person, what: str = "profile") -> None:
    assert isinstance(payload, dict), f"{what} is not an object: {payload!r}"
    got = {k: payload.get(k, "<missing>") for k in PROFILE_KEYS}
    assert got == who.profile(), f"{what} mismatch: got {got}, expected {who.profile()}"


# --------------------------------------------------------------------------- client


@dataclass
class Client:
    """One WebSocket with frame checks. `uuid` is learned from the first frame's `to`."""

    ws: ClientConnection
    label: str
    side: str = "user"  # "user" | "waiter": which endpoint this socket is on
    person: Person | None = None
    uuid: str | None = None
    log: list[Any] = field(default_factory=list)

    # ---- raw I/O

    async def send(self, frame: Any) -> None:
        await self.send_raw(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        self.log.append(("sent", data if len(data) < 300 else f"<{len(data)} chars>"))
        await self.ws.send(data)

    def _history(self) -> str:
        return "\n    ".join(repr(x)[:400] for x in self.log[-12:]) or "(nothing)"

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"[{self.label}] no frame within {timeout}s; recent traffic:\n    {self._history()}"
            ) from None
        except ConnectionClosed as exc:
            raise AssertionError(
                f"[{self.label}] socket closed (code {close_code(exc)}) while waiting "
                f"for a frame; recent traffic:\n    {self._history()}"
            ) from None
        assert isinstance(raw, str), f"[{self.label}] binary frame from server: {raw!r}"
        frame: dict[str, Any] = json.loads(raw)
        self.log.append(("recv", frame))
        self._check_envelope(frame)
        return frame

    def _check_envelope(self, frame: Any) -> None:
        where = f"[{self.label}] frame {frame!r}"
        assert isinstance(frame, dict), f"{where}: not a JSON object"
        assert isinstance(frame.get("type"), str) and frame["type"], f"{where}: no type"
        to = check_uuid(frame.get("to"), f"{where}: to")
        if self.uuid is None:
            self.uuid = to
        assert to == self.uuid, f"{where}: `to` changed from {self.uuid} to {to}"
        check_date(frame.get("date"), f"{where}: date")
        if frame.get("from") is not None:
            check_uuid(frame["from"], f"{where}: from")
        if frame["type"].startswith("message_") and frame["type"] != "message_history":
            check_message_id(frame.get("id"), f"{where}: id")

    # ---- expectations

    async def expect(
        self,
        type_: str,
        timeout: float = 5.0,
        *,
        skip: tuple[str, ...] = (),
        from_: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """The next frame (ignoring types in `skip`) must be `type_`, with `fields` equal.

        `from_` checks the frame's `from` (a Python keyword, hence the underscore).
        """
        if from_ is not None:
            fields["from"] = from_
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = max(0.01, deadline - asyncio.get_running_loop().time())
            frame = await self.recv(left)
            if frame["type"] in skip and frame["type"] != type_:
                continue
            break
        assert frame["type"] == type_, (
            f"[{self.label}] expected {type_!r}, got {frame!r}\n  recent traffic:\n    "
            f"{self._history()}"
        )
        for key, value in fields.items():
            assert frame.get(key) == value, (
                f"[{self.label}] {type_}.{key}: expected {value!r}, got {frame.get(key)!r} "
                f"in {frame!r}"
            )
        return frame

    async def expect_error(
        self, status: int, timeout: float = 5.0, op_id: str | None = None
    ) -> dict[str, Any]:
        frame = await self.expect("error", timeout)
        payload = frame.get("payload")
        assert isinstance(payload, dict), f"[{self.label}] error without payload: {frame!r}"
        assert payload.get("status") == status, (
            f"[{self.label}] expected error status {status}, got {frame!r}"
        )
        assert isinstance(payload.get("message"), str) and payload["message"], (
            f"[{self.label}] error without a message: {frame!r}"
        )
        assert "data" in payload, f"[{self.label}] error payload without data: {frame!r}"
        if op_id is not None:
            assert frame.get("op_id") == op_id, f"[{self.label}] op_id not echoed: {frame!r}"
        return frame

    async def sync(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Send a barrier, read up to its answer; returns the frames that came before it.

        The barrier is a frame of a type the server does not know, answered
        at once with `error` 100000 echoing its op_id. The server handles a
        socket's frames in order and sends a socket's frames in order, so the
        answer comes after everything the server had sent this socket before
        it read the barrier, and after the effects of every frame this socket
        sent before it (a history read or replay in progress included). The
        barrier is a frame like any other: it counts as activity and against
        the rate limit.
        """
        op = f"barrier-{uuid.uuid4()}"
        await self.send({"type": BARRIER_TYPE, "op_id": op})
        before: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = max(0.01, deadline - asyncio.get_running_loop().time())
            frame = await self.recv(left)
            if frame["type"] == "error" and frame.get("op_id") == op:
                assert frame["payload"]["status"] == 100000, frame
                return before
            before.append(frame)

    async def expect_nothing(self, within: float = 0.3) -> None:
        """No frame arrives within `within` s, nor before the answer to a barrier (`sync`).

        The barrier makes the check complete for everything the server had
        sent this socket by then, however slow the machine; the window is for
        effects that reach it later (through the store, or another node).
        """
        try:
            raw = await asyncio.wait_for(self.ws.recv(), within)
        except TimeoutError:
            raw = None
        except ConnectionClosed as exc:
            raise AssertionError(
                f"[{self.label}] socket closed (code {close_code(exc)}), expected it to stay "
                "open and quiet"
            ) from None
        if raw is not None:
            raise AssertionError(f"[{self.label}] expected no frame within {within}s, got {raw!r}")
        before = await self.sync()
        assert not before, f"[{self.label}] expected no frame, got {before!r}"

    async def drain(self, allowed: tuple[str, ...], within: float = 0.3) -> list[dict[str, Any]]:
        """Frames until none arrives for `within` s and up to a barrier's answer (`sync`).

        Each must have a type in `allowed`.
        """
        frames: list[dict[str, Any]] = []
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), within)
            except TimeoutError:
                break
            except ConnectionClosed as exc:
                raise AssertionError(
                    f"[{self.label}] socket closed (code {close_code(exc)}) while draining"
                ) from None
            frame = json.loads(raw)
            self.log.append(("recv", frame))
            self._check_envelope(frame)
            frames.append(frame)
        frames += await self.sync()
        for frame in frames:
            assert frame["type"] in allowed, (
                f"[{self.label}] only {allowed} expected here, got {frame!r}"
            )
        return frames

    async def expect_closed(self, code: int | None = None, timeout: float = 5.0) -> int | None:
        """The socket must close (with `code`, if given) before any further frame arrives."""
        try:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"[{self.label}] not closed within {timeout}s; recent traffic:\n    "
                f"{self._history()}"
            ) from None
        except ConnectionClosed as exc:
            got = close_code(exc)
            if code is not None:
                assert got == code, f"[{self.label}] closed with {got}, expected {code}"
            return got
        raise AssertionError(f"[{self.label}] expected close, got frame {raw!r}")

    # ---- protocol steps

    async def auth(
        self, who: Person | None = None, *, token: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Authenticate; expects auth_success with `who`'s profile. Returns the frame."""
        who = who or self.person
        assert who is not None or token is not None
        if token is None:
            assert who is not None
            token = who.token()
        await self.send({"type": "auth", "payload": {"token": token, **extra}})
        frame = await self.expect("auth_success")
        if who is not None:
            assert_profile(frame.get("payload"), who, f"[{self.label}] auth_success payload")
            self.person = who
        return frame

    async def send_text(
        self, text: str, *, to: str | None = None, op_id: str | None = None
    ) -> dict[str, Any]:
        """Send message_text and return its checked ack."""
        return await self._send_message("message_text", {"text": text}, to, op_id)

    async def send_image(
        self, url: str, *, to: str | None = None, op_id: str | None = None
    ) -> dict[str, Any]:
        return await self._send_message("message_image", {"image": url}, to, op_id)

    async def _send_message(
        self, type_: str, payload: dict[str, Any], to: str | None, op_id: str | None
    ) -> dict[str, Any]:
        op_id = op_id or new_op_id()
        remember(*(str(v) for v in payload.values()))  # no server log may hold a message
        frame: dict[str, Any] = {"type": type_, "op_id": op_id, "payload": payload}
        if to is not None:
            frame["to"] = to
        await self.send(frame)
        ack = await self.expect(f"{type_}_success", op_id=op_id)
        assert ack.get("payload") == payload, f"[{self.label}] ack payload differs: {ack!r}"
        return ack

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:  # the server may be gone already
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (a network failure)."""
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()


async def pair(user: Client, waiter: Client) -> None:
    """`user` sends connect and must be served by `waiter` at once (it has capacity)."""
    assert user.person is not None and waiter.person is not None
    await user.send({"type": "connect"})
    ok = await user.expect("connect_success", from_=waiter.uuid)
    assert_profile(ok.get("payload"), waiter.person, "connect_success payload")
    assert ok["payload"].get("uuid") == waiter.uuid, f"connect_success payload.uuid: {ok!r}"
    new = await waiter.expect("new_connection", from_=user.uuid)
    assert_profile(new.get("payload"), user.person, "new_connection payload")
    assert new["payload"].get("uuid") == user.uuid, f"new_connection payload.uuid: {new!r}"


async def say(
    sender: Client, receiver: Client, text: str | None = None, *, image: str | None = None
) -> dict[str, Any]:
    """One message from sender to receiver (its conversation partner): acked and delivered.

    Returns the ack; the delivered frame must carry the same id, `from` the sender's socket.
    """
    to = receiver.uuid if sender.side == "waiter" else None
    if image is not None:
        ack = await sender.send_image(image, to=to)
        type_, payload = "message_image", {"image": image}
    else:
        assert text is not None
        ack = await sender.send_text(text, to=to)
        type_, payload = "message_text", {"text": text}
    got = await receiver.expect(type_, from_=sender.uuid, id=ack["id"])
    assert got["payload"] == payload, got
    return ack


def close_code(exc: ConnectionClosed) -> int | None:
    if exc.rcvd is not None:
        return exc.rcvd.code
    if exc.sent is not None:
        return exc.sent.code
    return None


async def open_socket(
    url: str, label: str, *, side: str = "user", origin: str | None = None
) -> Client:
    ws = await connect(
        url,
        compression=None,
        proxy=None,
        origin=origin,  # type: ignore[arg-type]
        open_timeout=5,
        close_timeout=2,
        max_queue=None,
        max_size=None,
    )
    return Client(ws=ws, label=label, side=side)


__all__ = [
    "SECRET",
    "Client",
    "InvalidStatus",
    "Person",
    "assert_profile",
    "check_date",
    "check_message_id",
    "check_uuid",
    "mint",
    "new_op_id",
    "open_socket",
    "pair",
    "person",
    "say",
]
