"""`GET /v1/api/stats?since=&until=`: how the desk did over a period.

Counted in [since, until): conversations opened, users served and users who
left while queued (departures from the queue, `queue_exits`), and, each as
count, mean, p50 and p90 in seconds:

* `waiting`: queued -> assigned, per user served (from its arrival: a user
  sent back to the queue when its waiter left keeps it);
* `first_reply`: assigned -> the waiter's first message, per conversation
  opened in the period that has one;
* `handling`: assigned -> closed, per conversation opened in the period and
  closed since;

and the ratings of the conversations opened in the period (count, mean,
how many of each star). Percentiles are nearest-rank over every value of
the period, computed by the database (`record_queries.period_stats`), so a
period may be of any length. `until` defaults to now, `since` to a day
before `until`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from kefu.instants import HELP as INSTANT_HELP
from kefu.server.api.auth import Reader
from kefu.server.api.context import Ctx
from kefu.server.api.conversations import instant
from kefu.server.api.errors import bad_input
from kefu.server.api.values import timestamp
from kefu.store.records import Spread

router = APIRouter(tags=["stats"])

DAY = 86_400.0


class Durations(BaseModel):
    count: int
    mean: float | None = Field(description="Seconds; null without values")
    p50: float | None
    p90: float | None

    @classmethod
    def of(cls, spread: Spread) -> Durations:
        return cls(
            count=spread.count,
            mean=_ms(spread.mean),
            p50=_ms(spread.p50),
            p90=_ms(spread.p90),
        )


def _ms(seconds: float | None) -> float | None:
    """Seconds to the millisecond."""
    return None if seconds is None else round(seconds, 3)


class Ratings(BaseModel):
    count: int
    mean: float | None
    stars: dict[str, int] = Field(description='Conversations per rating, "1" to "5"')


class StatsOut(BaseModel):
    since: str
    until: str
    conversations: int = Field(description="Opened in the period")
    served: int = Field(description="Users a waiter took from the queue in the period")
    left_while_queued: int = Field(description="Users who left the queue before being served")
    waiting: Durations = Field(description="Queued -> assigned")
    first_reply: Durations = Field(description="Assigned -> the waiter's first message")
    handling: Durations = Field(description="Assigned -> closed")
    ratings: Ratings


@router.get("/stats", summary="How the desk did over a period")
async def stats(
    caller: Reader,
    ctx: Ctx,
    since: Annotated[
        str | None,
        Query(max_length=64, description=f"Start (default: a day before until): {INSTANT_HELP}"),
    ] = None,
    until: Annotated[
        str | None,
        Query(max_length=64, description=f"End, excluded (default: now): {INSTANT_HELP}"),
    ] = None,
) -> StatsOut:
    end = instant(until, "until")
    end = ctx.clock() if end is None else end
    start = instant(since, "since")
    start = end - DAY if start is None else start
    if start >= end:
        raise bad_input("since must be before until")
    rows = await ctx.store.period_stats(start, end)
    stars = {str(n): rows.ratings.get(n, 0) for n in range(1, 6)}
    rated = sum(rows.ratings.values())
    total = sum(n * count for n, count in rows.ratings.items())
    return StatsOut(
        since=timestamp(start) or "",
        until=timestamp(end) or "",
        conversations=rows.conversations,
        served=rows.served,
        left_while_queued=rows.left,
        waiting=Durations.of(rows.waits),
        first_reply=Durations.of(rows.first_replies),
        handling=Durations.of(rows.handling),
        ratings=Ratings(count=rated, mean=round(total / rated, 3) if rated else None, stars=stars),
    )
