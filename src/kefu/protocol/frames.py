"""Client frames, decoded and validated in one pass (msgspec tagged unions).

Each endpoint has its own union: the same `type` may carry a different
payload on the user and the waiter socket (`disconnect`, `rate`,
`get_history`). Unknown fields are ignored, as a client written for a later
version may send more. Limits that depend on settings (text length) are
checked by `validate_text`/`validate_image`, right after decoding.
"""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

OpId = Annotated[str, Meta(max_length=128)]
MessageId = Annotated[str, Meta(max_length=32)]
SocketId = Annotated[str, Meta(max_length=64)]


class AuthPayload(Struct):
    token: str
    last_id: MessageId | None = None


class TextPayload(Struct):
    """`text`; clients written before the field existed send `message` (an alias)."""

    text: str | UnsetType = UNSET  # unset fields are not encoded (stored payloads)
    message: str | UnsetType = UNSET


class ImagePayload(Struct):
    image: str


class RatePayload(Struct):
    rate: Annotated[int, Meta(ge=1, le=5)]


class UuidPayload(Struct):
    uuid: SocketId


class UserHistoryPayload(Struct):
    before: MessageId | None = None
    limit: Annotated[int, Meta(ge=1, le=100)] = 100


class WaiterHistoryPayload(Struct):
    user_id: Annotated[str, Meta(min_length=1, max_length=64)]
    before: MessageId | None = None
    limit: Annotated[int, Meta(ge=1, le=100)] = 100


class TypingPayload(Struct):
    typing: bool


class ReadPayload(Struct):
    id: MessageId


class TransferPayload(Struct):
    uuid: SocketId
    waiter_id: Annotated[str, Meta(min_length=1, max_length=64)]


class Frame(Struct, tag_field="type", kw_only=True):
    op_id: OpId | None = None
    to: SocketId | None = None


# -- shared by both sockets --------------------------------------------------
class Auth(Frame, tag="auth"):
    payload: AuthPayload


class MessageText(Frame, tag="message_text"):
    payload: TextPayload


class MessageImage(Frame, tag="message_image"):
    payload: ImagePayload


class Typing(Frame, tag="typing"):
    payload: TypingPayload


class Read(Frame, tag="read"):
    payload: ReadPayload


# -- user socket ---------------------------------------------------------------
class Connect(Frame, tag="connect"):
    payload: Any = None


class UserDisconnect(Frame, tag="disconnect"):
    payload: Any = None


class UserHistory(Frame, tag="get_history"):
    payload: UserHistoryPayload | None = None


class UserRate(Frame, tag="rate"):
    payload: RatePayload


# -- waiter socket -------------------------------------------------------------
class Ready(Frame, tag="ready"):
    payload: Any = None


class Unready(Frame, tag="unready"):
    payload: Any = None


class WaiterDisconnect(Frame, tag="disconnect"):
    payload: UuidPayload


class WaiterHistory(Frame, tag="get_history"):
    payload: WaiterHistoryPayload


class SessionHistory(Frame, tag="get_history_session"):
    payload: Any = None


class WaiterRate(Frame, tag="rate"):
    payload: Any = None


class Transfer(Frame, tag="transfer"):
    payload: TransferPayload


UserFrame = (
    Auth
    | Connect
    | UserDisconnect
    | MessageText
    | MessageImage
    | UserHistory
    | UserRate
    | Typing
    | Read
)
WaiterFrame = (
    Auth
    | Ready
    | Unready
    | WaiterDisconnect
    | MessageText
    | MessageImage
    | WaiterHistory
    | SessionHistory
    | WaiterRate
    | Transfer
    | Typing
    | Read
)

user_decoder = msgspec.json.Decoder(UserFrame)
waiter_decoder = msgspec.json.Decoder(WaiterFrame)
_any_decoder = msgspec.json.Decoder()


class FrameError(Exception):
    """A frame the server cannot act on; `data` is the frame as far as it parsed."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


def decode(decoder: msgspec.json.Decoder[Any], raw: bytes | str) -> Frame:
    """Decode and validate one client frame, or raise FrameError with a readable message."""
    try:
        frame: Frame = decoder.decode(raw)
        return frame
    except RecursionError:  # nested deeper than the decoder goes: never a valid frame
        raise FrameError("invalid JSON: nested too deeply", _shallow(raw)) from None
    except msgspec.ValidationError as exc:
        data = loose(raw)
        message = str(exc)
        if message.startswith("Invalid value") and message.endswith("at `$.type`"):
            message = f"unknown type {data.get('type')!r}" if isinstance(data, dict) else message
        elif message.startswith("Object missing required field `type`"):
            message = "missing field `type`"
        raise FrameError(message, data) from None
    except msgspec.DecodeError as exc:
        raise FrameError(f"invalid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise FrameError("invalid JSON: the frame is not UTF-8") from None


def loose(raw: bytes | str) -> Any:
    """Any JSON value, or None: for error replies only."""
    try:
        return _any_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    except RecursionError:
        return _shallow(raw)


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]')


def _shallow(raw: bytes | str) -> dict[str, Any] | None:
    """The top-level `type` and `op_id` of a frame too deeply nested to decode, if present.

    A scan of the tokens that tracks depth, so that a key nested in the
    payload is never taken for the frame's own. Used only for error replies.
    """
    try:
        text = raw if isinstance(raw, str) else raw.decode()
    except UnicodeDecodeError:
        return None
    found: dict[str, Any] = {}
    depth = 0
    key: str | None = None
    expect_value = False
    for token in _TOKENS.finditer(text):
        t = token.group()
        if t in "[{":
            depth += 1
            expect_value = False
        elif t in "]}":
            depth -= 1
        elif t == ":":
            expect_value = depth == 1
        elif t == ",":
            key, expect_value = None, False
        elif depth == 1:
            if expect_value and key in ("type", "op_id"):
                with contextlib.suppress(msgspec.DecodeError):
                    found[key] = msgspec.json.decode(t)
                key, expect_value = None, False
            elif not expect_value:
                key = t[1:-1]
    return found or None


def op_id_of(data: Any) -> str | None:
    """Best-effort op_id of a frame that failed validation, for the error's echo."""
    if isinstance(data, dict):
        op = data.get("op_id")
        if isinstance(op, str) and len(op) <= 128:
            return op
    return None


def validate_text(payload: TextPayload, max_chars: int) -> TextPayload:
    """The payload with `text` set (from `message` if only that came), or FrameError."""
    text = payload.text
    if text is UNSET:
        text = payload.message
        if text is UNSET:
            raise FrameError("Object missing required field `text` - at `$.payload`")
        payload = TextPayload(text)
    elif payload.message is not UNSET:
        payload = TextPayload(text)  # stored and sent as `text` alone
    if not text.strip():
        raise FrameError("text must not be empty")
    if len(text) > max_chars:
        raise FrameError(f"text is longer than {max_chars} characters")
    return payload


def validate_image(payload: ImagePayload, max_chars: int) -> None:
    url = payload.image
    if len(url) > max_chars:
        raise FrameError(f"image URL is longer than {max_chars} characters")
    if not url.isascii() or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise FrameError("image URL must be ASCII, without spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise FrameError("image must be an absolute http or https URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FrameError("image must be an absolute http or https URL")
    if parts.username is not None or parts.password is not None:
        raise FrameError("image URL must not carry credentials")
