"""Webhooks and their deliveries, in portable SQLAlchemy Core (both backends run these).

The delivery worker (`server/webhooks/worker.py`, on one node or the
cluster's leader) drives a delivery through these steps, each one
transaction, so everything survives a restart or a new leader:

1. `fan_out` (`fanout.py`): the oldest outbox rows (`store/outbox.py`) become
   one delivery per event and subscribed webhook, with the JSON body to send,
   and are deleted. A run of messages is expanded into its messages (as
   stored now: an erased account's are erased already).
2. `due` (`attempts.py`): the pending deliveries whose time has come.
3. `record` (`attempts.py`): what each attempt got. A delivered one, or one
   that failed for good, makes the next delivery of its subject pending.

The webhooks themselves and the deliveries as the API lists them are in
`registry.py`; the records and states in `model.py`; the store methods, and
where each runs, in `queries.py`.

**Order.** Deliveries of one webhook and one subject (the user of a
conversation, or an account) go one at a time, in outbox order: the first
is `pending`, the others `waiting` behind it (`seq`). The API shows both as
pending. If two workers ever ran at once (a deposed leader not yet stopped),
a subject could be left with no pending delivery; `repair` finds such
subjects and makes their first one pending (the worker runs it at start and
then every minute).

Delivery ids are made by the worker (`kefu.ids`: time-ordered); a retried
delivery keeps its id and body. Finished deliveries are kept for
`KEEP_FINISHED` and then pruned, their bodies (which may hold message texts)
emptied as soon as they finish.
"""

from kefu.store.webhooks.model import (
    KEEP_FINISHED,
    PRUNE_ROWS,
    Delivery,
    DueDelivery,
    Outcome,
    Webhook,
)
from kefu.store.webhooks.queries import WebhookQueries

__all__ = [
    "KEEP_FINISHED",
    "PRUNE_ROWS",
    "Delivery",
    "DueDelivery",
    "Outcome",
    "Webhook",
    "WebhookQueries",
]
