"""Points in time as people write them: RFC 3339 with a zone, or Unix seconds.

Shared by the admin API's `since` / `until` parameters and `kefu export`.
"""

from __future__ import annotations

import re
from datetime import datetime

_SECONDS = re.compile(r"\d{1,12}(\.\d{1,6})?")
LATEST = 253_402_300_799.0  # 9999-12-31T23:59:59Z
HELP = (
    "RFC 3339 with a zone (`2026-12-01T08:00:00Z`, `2026-12-01T16:00:00+08:00`) "
    "or Unix seconds (`1796112000`)"
)


class BadInstant(ValueError):
    """Text that is neither RFC 3339 with a zone nor Unix seconds."""


def parse_instant(text: str) -> float:
    """Unix seconds for `text`; `BadInstant` if it is neither form (or before 1970)."""
    value = text.strip()
    if _SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            parsed = datetime.fromisoformat(value.upper())  # RFC 3339 allows `t` and `z`
        except ValueError:
            raise BadInstant(f"{text!r} is not a time: use {HELP}") from None
        if parsed.tzinfo is None or "T" not in value.upper():
            raise BadInstant(f"{text!r} needs a date, a time and a zone (Z or ±hh:mm)")
        seconds = parsed.timestamp()
    if not 0 <= seconds <= LATEST:
        raise BadInstant(f"{text!r} is out of range (1970 to 9999)")
    return seconds
