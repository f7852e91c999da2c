"""Server frame encoding: dates are RFC 3339 UTC with microseconds, as the store keeps them."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

from kefu.protocol.out import encode, rfc3339
from kefu.store.tables import from_us, to_us


def _reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def test_rfc3339_matches_datetime_formatting() -> None:
    rng = random.Random(7)
    stamps = [0.0, 1.0, 59.999999, 1764576000.123456, 4102444799.999999]
    stamps += [round(rng.uniform(0, 4e9), 6) for _ in range(20_000)]
    stamps += [1764576000 + i / 1_000_000 for i in range(2_000)]  # one second, densely
    for ts in stamps:
        assert rfc3339(ts) == _reference(ts), ts


def test_rfc3339_of_a_stored_time_is_the_ack_time() -> None:
    rng = random.Random(11)
    for _ in range(5_000):
        ts = round(rng.uniform(1.7e9, 1.8e9), 6)
        assert rfc3339(from_us(to_us(ts))) == rfc3339(ts)


def test_rfc3339_across_second_boundaries() -> None:
    assert rfc3339(1764576000.999999) == "2025-12-01T08:00:00.999999Z"
    assert rfc3339(1764576001.0) == "2025-12-01T08:00:01.000000Z"
    assert rfc3339(1764575999.5) == "2025-12-01T07:59:59.500000Z"


def test_encode_omits_defaults_and_names_from() -> None:
    frame = json.loads(encode("message_text", "u1", 1764576000.5, frm="w1", payload={"text": "hi"}))
    assert frame == {
        "type": "message_text",
        "to": "u1",
        "date": "2025-12-01T08:00:00.500000Z",
        "from": "w1",
        "payload": {"text": "hi"},
    }
