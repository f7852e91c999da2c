"""`GET /v1/api/live`: the queue in order with waiting times, and the waiters.

Read from the desk (`server/live.py`): this process's on one node; in a
cluster, the leader's latest published snapshot, whichever node answers
(`as_of` says when the leader took it). At most 500 queued users are
listed, the head of the queue; `queued` counts them all.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from kefu.server.api.auth import Reader
from kefu.server.api.context import Ctx
from kefu.server.api.conversations import ProfileOut
from kefu.server.api.errors import ApiError
from kefu.server.api.values import timestamp

router = APIRouter(tags=["live"])


class QueuedOut(BaseModel):
    position: int = Field(description="0 is served next")
    user: ProfileOut
    queued_at: str = Field(description="Its arrival (kept when it went back to the queue)")
    waiting: float = Field(description="Seconds since `queued_at`")
    online: bool = Field(description="A socket holds its place (else within its resume grace)")


class WaiterOut(BaseModel):
    waiter: ProfileOut
    ready: bool
    online: bool = Field(description="Signed in now (else within its resume grace)")
    load: int = Field(description="The conversations it holds")
    capacity: int = Field(description="The most it holds at once")


class LiveOut(BaseModel):
    as_of: str = Field(description="When the desk was read (a cluster's leader publishes it)")
    queued: int = Field(description="Every queued user")
    queue: list[QueuedOut] = Field(description="In queue order; at most the first 500")
    waiters: list[WaiterOut] = Field(description="By username")


@router.get("/live", summary="The queue and the waiters, now")
async def live(caller: Reader, ctx: Ctx) -> LiveOut:
    if ctx.live is None:  # pragma: no cover - create_app always gives one
        raise ApiError(503, "the desk cannot be read here")
    view = await ctx.live()
    now = max(ctx.clock(), view.at)
    return LiveOut(
        as_of=timestamp(view.at) or "",
        queued=view.live.queued,
        queue=[
            QueuedOut(
                position=i,
                user=ProfileOut.of(row.user),
                queued_at=timestamp(row.queued_at) or "",
                waiting=round(max(0.0, now - row.queued_at), 3),
                online=row.attached,
            )
            for i, row in enumerate(view.live.queue)
        ],
        waiters=[
            WaiterOut(
                waiter=ProfileOut.of(w.waiter),
                ready=w.ready,
                online=w.attached,
                load=w.load,
                capacity=w.capacity,
            )
            for w in view.live.waiters
        ],
    )
