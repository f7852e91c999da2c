"""The desk as it is now, for the admin API's `GET /live`: the queue and the waiters.

One node reads the switchboard in this process (`desk_live`). In a cluster
the desk runs on the leader, and the API on any node: the leader adds the
view to the status snapshot it publishes through the broker
(`cluster/status.py`), and every node reads it there (`StatusReader.live`),
as it was when published (`LiveView.at`).

Limits: at most `QUEUE_SHOWN` queued users are listed (the head of the
queue; `Live.queued` counts them all): the snapshot is published after
every event, so its size is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kefu.core.model import Profile
from kefu.core.switchboard import Live, QueuedRow, WaiterRow
from kefu.server.desk import Desk

QUEUE_SHOWN = 500


@dataclass(frozen=True, slots=True)
class LiveView:
    live: Live
    at: float  # when the desk was read (Unix seconds)


LiveSource = Callable[[], Awaitable[LiveView]]


def desk_live(desk: Desk, clock: Callable[[], float] = time.time) -> LiveSource:
    """One node: the desk in this process."""

    async def read() -> LiveView:
        return LiveView(desk.switchboard.live(QUEUE_SHOWN), clock())

    return read


def _profile(p: Profile) -> list[Any]:
    return [p.id, p.username, p.nickname, p.avatar]


def _unprofile(data: list[Any]) -> Profile:
    return Profile(str(data[0]), str(data[1]), data[2], str(data[3] or ""))


def to_json(view: LiveView) -> dict[str, Any]:
    """The view in the leader's snapshot (compact: rows as arrays)."""
    live = view.live
    return {
        "at": view.at,
        "queued": live.queued,
        "queue": [[*_profile(r.user), r.queued_at, r.attached] for r in live.queue],
        "waiters": [
            [*_profile(w.waiter), w.ready, w.attached, w.load, w.capacity] for w in live.waiters
        ],
    }


def from_json(data: dict[str, Any] | None) -> LiveView:
    """The view `to_json` made; an empty desk for None (no leader has published yet)."""
    if not data:
        return LiveView(Live([], 0, []), time.time())
    queue = [QueuedRow(_unprofile(r[:4]), float(r[4]), bool(r[5])) for r in data["queue"]]
    waiters = [
        WaiterRow(_unprofile(r[:4]), bool(r[4]), bool(r[5]), int(r[6]), int(r[7]))
        for r in data["waiters"]
    ]
    return LiveView(Live(queue, int(data["queued"]), waiters), float(data["at"]))
