"""create_app(settings): routes, and a lifespan that owns the store, the node and its desk."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.routing import Mount, Route

from kefu.ids import IdGenerator
from kefu.passwords import PasswordChecker
from kefu.server.accounts import Accounts
from kefu.server.api import PREFIX as API_PREFIX
from kefu.server.api import ApiContext, create_api
from kefu.server.desk import Desk
from kefu.server.gateway import Gateway
from kefu.server.history import History
from kefu.server.live import LiveSource, desk_live
from kefu.server.node import Node
from kefu.server.observe import observe_routes
from kefu.server.pages import web_routes
from kefu.server.placement import LocalPlacement
from kefu.server.retention import Retention
from kefu.server.status import StatusSource, desk_status, status_endpoint
from kefu.server.transport import publish
from kefu.server.webhooks import Refresher, delivery_worker
from kefu.settings import Settings
from kefu.store import open_store
from kefu.store.migrate import upgrade

if TYPE_CHECKING:
    from kefu.server.cluster.member import ClusterMember

log = logging.getLogger("kefu.app")


@dataclass
class Mode:
    """One node, or a member of a cluster: what differs is only who runs the desk."""

    start: Callable[[], Awaitable[None]]
    close: Callable[[], Awaitable[None]]
    status: StatusSource
    settled: Callable[[str], Awaitable[None]] | None = None  # a socket's auth was decided
    desk: Desk | None = None  # one node: the desk in this process
    live: LiveSource | None = None  # the queue and the waiters, for the admin API
    member: ClusterMember | None = None  # a cluster: this node's membership


def create_app(settings: Settings) -> Starlette:
    secret = settings.signing_secret()
    store = open_store(settings)
    node = Node(settings, store, IdGenerator(settings.node_id))
    mode = _cluster_member(node) if settings.broker_url else _one_node(node)
    accounts = Accounts(store, secret, lambda: node.ids())  # a cluster node's ids come late
    node.on_forget = accounts.forget  # an account changed (the admin API): read it again
    history = History(node, store, mode.settled)
    gateway = Gateway(node, accounts, history)
    passwords = PasswordChecker(settings.password_workers, settings.password_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(upgrade, settings.database_url)
        await store.start()
        subscriptions = Refresher(store)  # the webhook events this node's writer writes
        try:
            await subscriptions.start()
            await mode.start()
            tune_gc()
            yield
        finally:
            await subscriptions.close()
            await mode.close()
            passwords.close()
            await asyncio.sleep(0.05)  # let the writers send their close frames
            await store.close()

    api = create_api(ApiContext(settings, store, node, accounts, passwords, live=mode.live))
    routes = [
        Route("/v1/ws/status", status_endpoint(mode.status, settings)),
        *web_routes(settings, accounts, passwords, metrics=node.metrics),
        *observe_routes(settings, node, mode.desk, mode.member),  # /healthz /readyz /metrics
        Mount(API_PREFIX, app=api),  # the admin API (`kefu.server.api`)
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    publish(app, gateway.endpoints())  # the chat sockets (`kefu.server.transport`)
    return app


def _one_node(node: Node) -> Mode:
    desk = Desk(node.settings, node.store, LocalPlacement(node), node.ids, metrics=node.metrics)
    node.submit = desk.handle
    retention = Retention(node.store, node.settings)  # a cluster's leader runs its own
    webhooks = delivery_worker(node.settings, node.store, node.ids, node.metrics.webhooks)  # ditto

    async def start() -> None:
        queued, conversations = await desk.restore()
        if queued or conversations:
            log.warning("restored %d queued users and %d open conversations", queued, conversations)
        retention.start()
        webhooks.start()

    async def close() -> None:
        await webhooks.stop()
        await retention.stop()
        desk.close()
        await node.close()

    return Mode(start, close, desk_status(desk), desk=desk, live=desk_live(desk))


def _cluster_member(node: Node) -> Mode:
    if not node.settings.secret:  # a generated key would differ per node: tokens would not travel
        raise ValueError("a cluster node needs KEFU_SECRET, the same on every node")
    from kefu.broker import open_broker
    from kefu.server.cluster.member import ClusterMember

    member = ClusterMember(node, open_broker(node.settings))
    return Mode(
        member.start,
        member.close,
        member.cluster_status,
        member.settled,
        member=member,
        live=member.status.live,
    )


def tune_gc() -> None:
    """Keep the cyclic collector off the message path.

    Almost everything a message allocates is freed by reference counting, but
    the default thresholds still run full collections over every long-lived
    object (accounts, connections, the app) every few seconds under load:
    15-100 ms pauses. Freezing what exists at start and collecting the young
    generations less often keeps pauses to a few ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
