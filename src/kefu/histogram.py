"""A histogram of plain integers, cheap enough for the message path and the store's writer.

Observing costs a `bisect` and two additions, with no lock and no label
lookup; `/metrics` reads the counts when it is scraped (`server/exporter.py`
turns them into a Prometheus histogram). Buckets are upper bounds, inclusive
(Prometheus' `le`); values above the last bound count in `+Inf` only.

`observe_since` takes a whole batch at once: the latency of many events that
end at the same moment (`now`) from their start times, in a few `bisect`s per
bucket bound instead of one per event.

Limits: one thread observes a given histogram (the event loop, or the
store's writer thread); a scrape from another thread may see an observation
half counted (in its bucket, not yet in `sum`), which Prometheus tolerates.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence

# Bucket bounds, by what they measure.
SECONDS_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SECONDS_SLOW = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bucket bounds must be increasing")
        self.bounds: tuple[float, ...] = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # per bucket, not cumulative; last: +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_since(self, now: float, starts: list[float]) -> None:
        """Observe `now - s` for every `s` in `starts` (sorted here, in place)."""
        n = len(starts)
        if not n:
            return
        starts.sort()
        counts = self.counts
        below = 0  # observations in the buckets so far (latency <= bound)
        for i, bound in enumerate(self.bounds):
            within = n - bisect_left(starts, now - bound)
            counts[i] += within - below
            below = within
        counts[-1] += n - below
        self.sum += n * now - math.fsum(starts)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(`le`, observations at or below it) per bound, then `+Inf`: Prometheus' buckets."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            total += n
            out.append((_le(bound), total))
        out.append(("+Inf", total + self.counts[-1]))
        return out


def _le(bound: float) -> str:
    return str(int(bound)) + ".0" if bound.is_integer() else repr(bound)
