"""What kefu counts about itself: the figures behind `GET /metrics`.

One `Metrics` per process, owned by the node (`node.metrics`) and shared with
the gateway and the desk. Everything here is a plain integer, dictionary or
`Histogram`: the message path pays a dictionary lookup and an addition per
frame (`accepted`), and a list append per acked message (`ack_starts`,
observed once per loop pass). prometheus_client sees none of it until a
scrape, when `server/exporter.py` reads these figures. Label values are
bounded: frame types are the protocol's (else `unknown`), statuses and close
codes are the protocol's, sides are `user` / `waiter`; nothing is labelled
per socket or per account.

Webhooks (the hook for their sender): `metrics.webhooks.count(result)` once
per delivery attempt, exported as `kefu_webhook_deliveries_total{result}`
(see `WebhookDeliveries`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Literal

from kefu.core import commands as c
from kefu.core.errors import NotPermitted
from kefu.core.model import Role
from kefu.histogram import SECONDS_FAST, SECONDS_SLOW, Histogram
from kefu.protocol import frames as f
from kefu.store.base import LifecycleWrite


def _frame_classes() -> list[type[f.Frame]]:
    out: list[type[f.Frame]] = []
    todo = list(f.Frame.__subclasses__())
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo += cls.__subclasses__()
    return out


FRAME_TAGS: dict[type, str] = {
    cls: str(cls.__struct_config__.tag) for cls in _frame_classes() if cls.__struct_config__.tag
}
FRAME_TYPES = frozenset(FRAME_TAGS.values())
UNKNOWN = "unknown"

# POST /v1/auth/login refusals by HTTP status (see `server/login.py`)
LOGIN_REASONS = {
    400: "bad_request",
    401: "bad_credentials",
    403: "origin",
    413: "bad_request",
    415: "bad_request",
    429: "throttled",
    503: "busy",
}

WebhookResult = Literal["delivered", "failed", "dropped"]
WEBHOOK_RESULTS: tuple[WebhookResult, ...] = ("delivered", "failed", "dropped")


class WebhookDeliveries:
    """`kefu_webhook_deliveries_total{result}`: webhook delivery attempts, by how they ended.

    The webhook sender calls `count(result)` once per attempt (it has the node,
    so `node.metrics.webhooks`):

    * `delivered`: the receiver answered 2xx;
    * `failed`: no answer, a timeout or another status (the attempt will be retried);
    * `dropped`: given up on (retries used up, or the event could not be queued).

    A new result needs its name added to `WebhookResult` (labels stay a fixed set).
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[WebhookResult, int] = dict.fromkeys(WEBHOOK_RESULTS, 0)

    def count(self, result: WebhookResult) -> None:
        self.counts[result] += 1


class Metrics:
    """The counters of one process (see the module docstring); read by `server/exporter.py`."""

    def __init__(self) -> None:
        # -- frames from clients (the gateway)
        self.accepted: defaultdict[type, int] = defaultdict(int)  # frame class -> accepted
        self.frames_refused: defaultdict[tuple[str, str], int] = defaultdict(int)  # (type, why)
        self.auth_failures: defaultdict[str, int] = defaultdict(int)  # side -> failed `auth`
        self.closes: defaultdict[tuple[str, str], int] = defaultdict(int)  # (side, code)
        # -- messages (the node): stored by type; the rest by (type, result)
        self.stored: defaultdict[str, int] = defaultdict(int)
        self.messages: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.ack_starts: list[float] = []  # arrival times of messages acked in this loop pass
        self.ack_seconds = Histogram(SECONDS_FAST)  # arrival -> ack pushed
        # -- answers
        self.errors: defaultdict[int, int] = defaultdict(int)  # `error` frames by status
        self.login_failures: defaultdict[str, int] = defaultdict(int)  # reason -> refused sign-ins
        # -- the desk (on one node, or while this node leads a cluster)
        self.queue_wait = Histogram(SECONDS_SLOW)  # queued_at -> conversation opened
        self._dequeued: str | None = None
        self.webhooks = WebhookDeliveries()

    # -- the gateway -----------------------------------------------------------------------
    def invalid(self, data: object) -> None:
        """A frame that did not decode or validate; `data` is what of it parsed."""
        type_ = data.get("type") if isinstance(data, dict) else None
        tag = type_ if isinstance(type_, str) and type_ in FRAME_TYPES else UNKNOWN
        self.frames_refused[(tag, "invalid")] += 1

    def refused(self, frame: f.Frame, exc: BaseException) -> None:
        """A decoded frame the gateway refused (or the database failed) with `exc`."""
        if isinstance(exc, f.FrameError):
            why = "invalid"
        elif isinstance(exc, NotPermitted):
            why = "refused"
        else:
            why = "unavailable"
        self.frames_refused[(FRAME_TAGS.get(type(frame), UNKNOWN), why)] += 1

    def unread(self, why: Literal["too_big", "rate_limited"]) -> None:
        """A frame refused before it was decoded."""
        self.frames_refused[(UNKNOWN, why)] += 1

    def closed(self, side: Role, code: int | None) -> None:
        """A chat socket is gone: `code` is the one kefu closed it with, None if the peer left."""
        self.closes[(side.value, "peer" if code is None else str(code))] += 1

    def login_refused(self, http_status: int) -> None:
        """A sign-in answered with an error (`server/login.py`), counted by why."""
        self.login_failures[LOGIN_REASONS.get(http_status, "other")] += 1

    # -- the node -----------------------------------------------------------------------------
    def acks_pushed(self) -> None:
        """Observe the messages acked in this loop pass (scheduled by the node, once per pass)."""
        starts = self.ack_starts
        self.ack_seconds.observe_since(time.time(), starts)
        starts.clear()

    # -- the desk -------------------------------------------------------------------------------
    def written(self, record: LifecycleWrite) -> None:
        """A lifecycle record the desk writes: a conversation opened from the queue is a wait.

        The switchboard dequeues a user right before it opens its conversation; a
        transfer opens one without a dequeue (that user did not wait in the queue).
        """
        if isinstance(record, c.Dequeue):
            self._dequeued = record.user_id
            return
        if (
            isinstance(record, c.OpenConversation)
            and record.user_id == self._dequeued
            and record.queued_at is not None
        ):
            self.queue_wait.observe(max(0.0, record.opened_at - record.queued_at))
        self._dequeued = None
