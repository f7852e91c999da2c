"""Server frames: one struct, encoded by msgspec; `date` is RFC 3339 UTC with microseconds."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from msgspec import Struct, field

_encoder = msgspec.json.Encoder()


class OutFrame(Struct, omit_defaults=True):
    type: str
    to: str
    date: str
    frm: str | None = field(default=None, name="from")
    id: str | None = None
    op_id: str | None = None
    payload: Any = None


_second: tuple[int, str] = (0, "1970-01-01T00:00:00")
_last: tuple[float, str] = (0.0, "1970-01-01T00:00:00.000000Z")


def rfc3339(ts: float) -> str:
    """`ts` as RFC 3339 UTC with microseconds; the ack and the delivery of a message share one.

    Rounded to the nearest microsecond, as the store keeps it (`tables.to_us`);
    the date and time of the second are formatted once per second.
    """
    global _second, _last
    if _last[0] == ts:
        return _last[1]
    seconds, micros = divmod(round(ts * 1_000_000), 1_000_000)
    if _second[0] != seconds:
        _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    text = f"{_second[1]}.{micros:06d}Z"
    _last = (ts, text)
    return text


def encode(
    type_: str,
    to: str,
    ts: float,
    *,
    frm: str | None = None,
    id_: str | None = None,
    op_id: str | None = None,
    payload: Any = None,
) -> bytes:
    return _encoder.encode(OutFrame(type_, to, rfc3339(ts), frm, id_, op_id, payload))


def legacy_text(type_: str, payload: Any) -> Any:
    """A stored text payload with `message` beside `text`, for clients that read `message`."""
    if type_ == "message_text" and isinstance(payload, dict) and "text" in payload:
        return {**payload, "message": payload["text"]}
    return payload
