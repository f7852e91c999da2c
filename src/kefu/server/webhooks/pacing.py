"""How long the delivery worker waits between rounds: it takes a share of what the chat leaves.

The worker runs on the event loop that serves the chat, and its rounds let
the chat run between their steps. At the end of each round, `Pacer` reads
the process's CPU time (every thread; the sender process is not part of it)
and the wall time since the previous round ended: what the process used
beyond the round's own steps (`busy`, as the store measured them) is the
chat's load, `u` (of one core, 0..1).
The worker may then be busy `budget * (1 - u)**2` of the time: the whole
budget while the chat is idle, a quarter of it with the chat at half a core,
next to nothing when the chat takes all of it (at least `FLOOR`, so
deliveries never stop altogether). A round that took `spent` seconds is
followed by a wait of `spent * (1 - share) / share`, between `gap` and
`MAX_WAIT`, where `spent` is the time its steps held the loop (the round's
wall time would also charge it for the chat's work between its steps).
"""

from __future__ import annotations

import time
from collections.abc import Callable

FLOOR = 0.005  # the smallest share of the time the worker takes, however busy the chat
MAX_WAIT = 2.0  # seconds at most between two busy rounds


class Pacer:
    def __init__(
        self,
        budget: float,
        gap: float,
        wall: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self.budget = budget
        self.gap = gap
        self._wall = wall
        self._cpu = cpu
        self._last: tuple[float, float] | None = None  # (wall, cpu) when the last round ended
        self._began = (0.0, 0.0)
        self.load = 0.0  # the chat's load over the last cycle, as measured

    def begin(self) -> None:
        """A round begins."""
        self._began = (self._wall(), self._cpu())

    def wait(self, busy: float | None = None) -> float:
        """The round ended: seconds to wait before the next one.

        `busy`: the seconds the round's own steps held the loop; None: all of its wall time.
        """
        wall, cpu = self._wall(), self._cpu()
        took = max(0.0, wall - self._began[0])
        spent = took if busy is None else min(took, max(0.0, busy))
        if self._last is not None:
            cycle = wall - self._last[0]
            if cycle > 0:
                chat = (cpu - self._last[1]) - spent  # the round's own time counts as its CPU
                self.load = min(1.0, max(0.0, chat / cycle))
        self._last = (wall, cpu)
        share = max(FLOOR, self.budget * (1.0 - self.load) ** 2)
        return min(MAX_WAIT, max(self.gap - took, spent * (1.0 - share) / share))
