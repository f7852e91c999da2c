"""Time-ordered ids: 20-digit zero-padded decimals that sort by creation time.

Layout of the 63-bit integer (a snowflake): 41 bits of milliseconds since
2024-01-01, 10 bits of node number, 12 bits of sequence. Within one process
ids strictly increase, even if the wall clock steps back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
WIDTH = 20


class IdGenerator:
    def __init__(self, node: int = 0, clock: Callable[[], float] | None = None) -> None:
        if not 0 <= node < 1024:
            raise ValueError(f"node must be in 0..1023, got {node}")
        self._node = node
        self._clock = clock or time.time
        self._last = 0

    def next_int(self) -> int:
        ms = int(self._clock() * 1000) - EPOCH_MS
        candidate = (ms << 22) | (self._node << 12)
        if candidate <= self._last:
            # same millisecond (or clock went back): bump the sequence, which may
            # borrow into the millisecond field; order is what matters.
            candidate = self._last + 1
        self._last = candidate
        return candidate

    def __call__(self) -> str:
        return str(self.next_int()).zfill(WIDTH)


def id_at(seconds: float) -> str:
    """The smallest id made at `seconds` (Unix): every id made before it sorts below it."""
    return str(max(0, int(seconds * 1000) - EPOCH_MS) << 22).zfill(WIDTH)


def id_time(id_: str) -> float:
    """The creation time (Unix seconds) encoded in an id."""
    return ((int(id_) >> 22) + EPOCH_MS) / 1000.0
