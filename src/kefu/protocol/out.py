"""Server frames: one struct, encoded by msgspec; `date` is RFC 3339 UTC with microseconds."""

from __future__ import annotations

from datetime import UTC, datetime
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


_last: tuple[float, str] = (0.0, "1970-01-01T00:00:00.000000Z")


def rfc3339(ts: float) -> str:
    """`ts` as RFC 3339 UTC with microseconds; the ack and the delivery of a message share one."""
    global _last
    if _last[0] == ts:
        return _last[1]
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")[:-6] + "Z"
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


def encode_value(value: Any) -> bytes:
    return _encoder.encode(value)
