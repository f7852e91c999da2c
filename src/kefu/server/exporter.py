"""`GET /metrics`: kefu's figures in Prometheus' text format, read when scraped.

`Exporter` is a prometheus_client collector over the plain counters that the
node, gateway, desk and store writer keep (`server/metrics.py`,
`kefu.histogram`): nothing on the message path calls prometheus_client.
Before each scrape `refresh` reads the figures that need a wait: the desk's
(one node), or the leader's status snapshot (a cluster; the last one seen if
the broker does not answer within `FIGURES_TIMEOUT`).

Which figures are whose: `kefu_sockets` and every counter are this
process's; `kefu_queue_length`, `kefu_waiters_ready` and
`kefu_conversations_active` are the deployment's (in a cluster every node
reports the same figure: aggregate them with `max`, not `sum`); the desk's
counters (`kefu_queue_wait_seconds`, errors it answers) count on the node
that ran the desk at the time. The names and what they mean:
docs/operations.md ("Health and metrics").

`KEFU_METRICS_ALLOW` (IPs / CIDR networks) limits who may scrape: the
client's address as `server/proxies.py` tells it (the peer, or what a
trusted proxy forwarded); empty: anyone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from kefu.core.model import Role
from kefu.histogram import Histogram
from kefu.server.metrics import FRAME_TAGS, FRAME_TYPES, UNKNOWN, Metrics
from kefu.server.node import Node
from kefu.server.proxies import TrustedProxies
from kefu.store.writer import WriterStats

FIGURES_TIMEOUT = 1.0  # seconds a scrape waits for the cluster's status snapshot

Figures = dict[str, Any]  # the status figures: pending_num, ready_waiter_num, conversation_num
ReadFigures = Callable[[], Awaitable[Figures]]

MESSAGE_TYPES = ("message_text", "message_image")


class Exporter:
    """The prometheus_client collector of one kefu process (see the module docstring)."""

    def __init__(
        self,
        node: Node,
        figures: ReadFigures,
        leading: Callable[[], bool],
        writer: WriterStats | None = None,
        reconnects: Callable[[], int] | None = None,
    ) -> None:
        self.node = node
        self.metrics: Metrics = node.metrics
        self._read_figures = figures
        self._leading = leading
        self._writer = writer
        self._reconnects = reconnects
        self._figures: Figures = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    async def refresh(self) -> None:
        self._figures = await self._read_figures()

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)

    def describe(self) -> list[Metric]:
        return []  # registered without a trial collect (names are checked in the tests)

    def collect(self) -> Iterator[Metric]:
        yield from self._gauges()
        yield from self._frames()
        yield from self._messages()
        yield from self._answers()
        yield from self._store()

    # -- gauges -----------------------------------------------------------------------
    def _gauges(self) -> Iterator[Metric]:
        sockets = GaugeMetricFamily(
            "kefu_sockets",
            "Chat sockets open on this node, by side and whether they authenticated.",
            labels=["side", "state"],
        )
        counts = {
            (side, state): 0
            for side in (Role.USER.value, Role.WAITER.value)
            for state in ("unauthenticated", "authenticated")
        }
        for conn in self.node.connections:
            state = "unauthenticated" if conn.account is None else "authenticated"
            counts[(conn.side.value, state)] += 1
        for (side, state), n in counts.items():
            sockets.add_metric([side, state], n)
        yield sockets
        figures = self._figures
        for name, key, doc in (
            ("kefu_queue_length", "pending_num", "Users waiting in the queue (the deployment's)."),
            (
                "kefu_waiters_ready",
                "ready_waiter_num",
                "Waiters online and ready to take users (the deployment's).",
            ),
            (
                "kefu_conversations_active",
                "conversation_num",
                "Open conversations (the deployment's).",
            ),
        ):
            value = figures.get(key)
            if isinstance(value, int):
                yield GaugeMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily(
            "kefu_leader",
            "1 on the node that runs the desk (always, on one node), else 0.",
            value=1 if self._leading() else 0,
        )

    # -- counters -------------------------------------------------------------------------
    def _frames(self) -> Iterator[Metric]:
        m = self.metrics
        frames = CounterMetricFamily(
            "kefu_frames",
            "Client frames by type and result: accepted (passed the gateway), invalid,"
            " refused (not permitted), unavailable (the database failed it), too_big,"
            " rate_limited; type unknown: not decoded.",
            labels=["type", "result"],
        )
        accepted = dict.fromkeys(FRAME_TYPES, 0)
        for cls, n in list(m.accepted.items()):
            tag = FRAME_TAGS.get(cls, UNKNOWN)
            accepted[tag] = accepted.get(tag, 0) + n
        for tag, n in sorted(accepted.items()):
            frames.add_metric([tag, "accepted"], n)
        for (tag, why), n in sorted(m.frames_refused.items()):
            frames.add_metric([tag, why], n)
        yield frames
        auth = CounterMetricFamily(
            "kefu_auth_failures",
            "`auth` frames refused (bad, expired or revoked token), by socket side.",
            labels=["side"],
        )
        for side in (Role.USER.value, Role.WAITER.value):
            auth.add_metric([side], m.auth_failures.get(side, 0))
        yield auth
        closes = CounterMetricFamily(
            "kefu_socket_closes",
            "Chat sockets gone, by side and the close code kefu sent (peer: the client closed"
            " or the connection dropped).",
            labels=["side", "code"],
        )
        for (side, code), n in sorted(m.closes.items()):
            closes.add_metric([side, code], n)
        yield closes

    def _messages(self) -> Iterator[Metric]:
        m = self.metrics
        messages = CounterMetricFamily(
            "kefu_messages",
            "Chat messages by type and result: stored (committed and acked), duplicate (a"
            " resend, acked again), conflict (op_id reused for another message), failed.",
            labels=["type", "result"],
        )
        for type_ in MESSAGE_TYPES:
            messages.add_metric([type_, "stored"], m.stored.get(type_, 0))
        for (type_, result), n in sorted(m.messages.items()):
            messages.add_metric([type_, result], n)
        yield messages
        yield _histogram(
            "kefu_message_ack_seconds",
            "From a message's arrival to its ack pushed to the sender (committed first).",
            m.ack_seconds,
        )
        yield _histogram(
            "kefu_queue_wait_seconds",
            "From a user's arrival in the queue to its conversation (counted by the desk).",
            m.queue_wait,
        )

    def _answers(self) -> Iterator[Metric]:
        m = self.metrics
        errors = CounterMetricFamily(
            "kefu_errors",
            "`error` frames sent, by protocol status (0: unknown / try again, 100000 invalid,"
            " 100001 no data, 100002 no permission, 100006 duplicate, 999999 not authenticated).",
            labels=["status"],
        )
        for status, n in sorted(m.errors.items()):
            errors.add_metric([str(status)], n)
        yield errors
        logins = CounterMetricFamily(
            "kefu_login_failures",
            "Refused sign-ins (POST /v1/auth/login) by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(m.login_failures.items()):
            logins.add_metric([reason], n)
        yield logins
        hooks = CounterMetricFamily(
            "kefu_webhook_deliveries",
            "Webhook delivery attempts by result: delivered, failed (to be retried), dropped.",
            labels=["result"],
        )
        for result, n in m.webhooks.counts.items():
            hooks.add_metric([result], n)
        yield hooks
        yield CounterMetricFamily(
            "kefu_broker_reconnects",
            "Times this node re-established its broker subscription after losing it (0 on one"
            " node: no broker).",
            value=self._reconnects() if self._reconnects is not None else 0,
        )

    def _store(self) -> Iterator[Metric]:
        stats = self._writer
        if stats is None:
            return
        yield _histogram(
            "kefu_store_commit_seconds",
            "Time to run and commit one batch of the store's writer (group commit).",
            stats.commit_seconds,
        )
        yield _histogram(
            "kefu_store_batch_ops",
            "Operations (messages, records, calls) per batch of the store's writer.",
            stats.batch_ops,
        )
        yield CounterMetricFamily(
            "kefu_store_batch_failures",
            "Batches the database rolled back as a whole (messages in them got errors).",
            value=stats.failures,
        )
        yield CounterMetricFamily(
            "kefu_store_records_dropped",
            "Queue and conversation records given up on after retries or fencing.",
            value=stats.dropped,
        )


def _histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=h.cumulative(), sum_value=h.sum)


class Allowed:
    """Who may scrape: KEFU_METRICS_ALLOW, with the client address as `server/proxies.py` says."""

    def __init__(self, allow: str, trusted_proxies: str) -> None:
        self._allow = TrustedProxies(allow)  # the same address rules: IPs and CIDR networks
        self._proxies = TrustedProxies(trusted_proxies)

    def __call__(self, request: Request) -> bool:
        if not self._allow:
            return True
        peer = request.client.host if request.client else None
        forwarded = ", ".join(request.headers.getlist("x-forwarded-for")) or None
        return self._allow.trusts(self._proxies.client(peer, forwarded))


def metrics_route(exporter: Exporter, allowed: Allowed) -> Route:
    async def metrics(request: Request) -> Response:
        if not allowed(request):
            return PlainTextResponse("not allowed to read metrics\n", status_code=403)
        body = await exporter.render()
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    return Route("/metrics", metrics, methods=["GET"])
