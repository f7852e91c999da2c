"""create_app(settings): routes, and a lifespan that owns the store and the runtime."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from kefu.ids import IdGenerator
from kefu.server.accounts import Accounts
from kefu.server.api import status_endpoint
from kefu.server.gateway import Gateway
from kefu.server.history import History
from kefu.server.pages import web_routes
from kefu.server.runtime import Runtime
from kefu.settings import Settings
from kefu.store import Store, open_store
from kefu.store.migrate import upgrade

log = logging.getLogger("kefu.app")

WEB_DIR = Path(__file__).parent / "web"


def create_app(settings: Settings) -> Starlette:
    secret = settings.signing_secret()
    store = open_store(settings)
    runtime, history, status = _node(settings, store)
    accounts = Accounts(store, secret, lambda: runtime.ids())  # a cluster node's ids come late
    gateway = Gateway(runtime, accounts, history)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(upgrade, settings.database_url)
        await store.start()
        try:
            await runtime.restore()
            tune_gc()
            yield
        finally:
            await runtime.close()
            await asyncio.sleep(0.05)  # let the writers send their close frames
            await store.close()

    routes = [
        Route("/v1/ws/status", status),
        *web_routes(settings, accounts),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.direct_endpoints = gateway.endpoints()  # the chat sockets (`kefu.server.direct`)
    app.state.runtime = runtime
    app.state.store = store
    return app


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


# -- one node or a cluster member (KEFU_BROKER_URL) -----------------------------------
def _node(settings: Settings, store: Store) -> tuple[Runtime, History, Any]:
    """The runtime, history reader and status endpoint of a single node or a cluster node."""
    ids = IdGenerator(settings.node_id)
    if not settings.broker_url:
        runtime = Runtime(settings, store, ids)
        return runtime, History(runtime, store), status_endpoint(runtime)
    if not settings.secret:  # a generated key would differ per node: tokens would not travel
        raise ValueError("a cluster node needs KEFU_SECRET, the same on every node")
    from kefu.broker import open_broker
    from kefu.server.cluster import ClusterHistory, ClusterRuntime, cluster_status_endpoint

    node = ClusterRuntime(settings, store, ids, open_broker(settings))
    return node, ClusterHistory(node, store), cluster_status_endpoint(node)
