"""How a SQLite store's WAL is copied into its database: the interface the store owns.

A `SqliteStore` starts its `Checkpoints` after its writer and stops them after
its writer has stopped; it reads their `stats`, and knows nothing of how they
are made:

* synchronous=NORMAL, writer on the loop: `checkpointer.Checkpointer`, from a
  thread and a connection of its own (the writer's connection never
  checkpoints: a checkpoint fsyncs).
* synchronous=FULL, writer on a thread: `AutoCheckpoints`, SQLite's automatic
  checkpoints, which that connection runs after its commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class CheckpointStats:
    """What a store's checkpoints did (`SqliteStore.checkpoint_stats`)."""

    rounds: int = 0
    passes: int = 0  # PASSIVE checkpoints, held ones included
    holds: int = 0  # held passes (the writer kept from starting batches)
    restarts: int = 0  # passes that found fewer frames than the one before: it started over
    held: float = 0.0  # seconds the writer was held, in all
    longest_hold: float = 0.0  # seconds
    most_frames: int = 0  # the most WAL frames a pass saw


class Checkpoints(Protocol):
    stats: CheckpointStats

    def start(self) -> None:
        """Begin, on the running loop, once the writer has started."""

    async def stop(self) -> None:
        """End, once the writer has stopped (nothing is written any more)."""


class AutoCheckpoints:
    """SQLite's own automatic checkpoints, run by the writer's connection: nothing to do here."""

    def __init__(self) -> None:
        self.stats = CheckpointStats()  # stays zero

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
