"""Signed webhooks, delivered from an outbox (docs/api.md, "Webhooks").

* The **events** are written by the store, in the transaction of the change
  that causes them (`store/outbox.py`), for the events some webhook
  subscribes to: the store's `Subscriptions`, which every node re-reads
  every `REFRESH_EVERY` seconds (`Refresher`) and the admin API at once
  after a change (`api/webhooks.py`).
* The **worker** (`worker.py`) turns them into deliveries and sends them:
  one per deployment, started by `_one_node` (`server/app.py`) or by the
  cluster's leader (`cluster/leader.py`), with `delivery_worker`.
* A delivery is a POST of `{"id", "event", "created_at", "data"}`, signed
  (`signing.py`), to a URL that must resolve to public addresses
  (`addresses.py`) unless `KEFU_WEBHOOK_ALLOW_PRIVATE`, sent by `sender.py`.

Nothing here logs a secret, a URL or a message's text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kefu.server import background
from kefu.server.metrics import WebhookDeliveries
from kefu.server.webhooks.worker import DeliveryWorker
from kefu.settings import Settings
from kefu.store.base import Store, StoreError
from kefu.store.webhooks import WebhookQueries

log = logging.getLogger("kefu.webhooks")

REFRESH_EVERY = 3.0  # seconds between two reads of the subscribed events, on every node


def webhook_store(store: Store) -> WebhookQueries:
    """`store` as the webhooks use it (both stores are `WebhookQueries`)."""
    if not isinstance(store, WebhookQueries):
        raise TypeError(f"{type(store).__name__} keeps no webhooks")
    return store


def delivery_worker(
    settings: Settings, store: Store, new_id: Callable[[], str], metrics: WebhookDeliveries
) -> DeliveryWorker:
    """The worker for this deployment (run it on one node, or on the leader only)."""
    return DeliveryWorker(
        webhook_store(store),
        new_id,
        metrics,
        retry_base=settings.webhook_retry_base,
        allow_private=settings.webhook_allow_private,
    )


class Refresher:
    """Keeps this node's `Subscriptions` current: read at start, then every `REFRESH_EVERY`."""

    def __init__(self, store: Store, every: float = REFRESH_EVERY) -> None:
        self.store = webhook_store(store)
        self.every = every
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the subscriptions before the node takes traffic, then keep them fresh."""
        try:
            await self.store.refresh_subscriptions()
        except StoreError as exc:
            log.warning("could not read the webhooks (%s); trying again in the background", exc)
        self._task = background.spawn(self._run(), "kefu-webhook-subs")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.store.refresh_subscriptions()
            except StoreError as exc:
                log.info("could not read the webhooks: %s", exc)

    async def close(self) -> None:
        task, self._task = self._task, None
        await background.stop(task)


__all__ = ["DeliveryWorker", "Refresher", "delivery_worker", "webhook_store"]
