"""The Broker protocol: what nodes of one deployment share besides the database.

Semantics (every implementation must pass tests/broker/test_contract.py):

* **Node channels** (`publish`/`publish_batch`/`subscribe`): at-most-once,
  ordered per (publisher, receiving node). A message to a node that is not
  listening is lost; that is fine because SQL is the truth and clients
  replay on resume. `publish` returns how many subscribers received it (0:
  nobody listens, the caller may keep it and retry) and never waits for a
  slow receiver. `publish_batch` sends many messages to one node in one
  round trip; the handler still gets them one by one, in order.
* **Event stream** (`append_events`/`read_events`): at-least-once, one total
  order, kept for a bounded length (older entries are trimmed). Nodes append
  lifecycle events; the leader reads them in order and records how far it
  got (`ack_events`), so a new leader continues where the old one stopped.
  Ids are strings that only `read_events(after=...)` needs to understand.
* **Lease** (`acquire_lease`/`renew_lease`/`release_lease`): at most one
  holder at a time; each successful acquisition returns a fencing token that
  is larger than every earlier one, and larger than `floor` (a token the
  caller has seen: this keeps tokens increasing even if the broker lost its
  data). A holder that fails to renew within the TTL must stop acting as
  leader before the TTL ends (measured from when it *sent* the renewal).
* **Presence** (`heartbeat`/`live_nodes`/`leave`): a node is live while its
  heartbeat key has not expired.
* **Node ids** (`claim_node_id`): small integers (0..1023) that no two live
  nodes hold at once; a claim lives as long as its owner keeps renewing it.
* **Shared values** (`put`/`get`): small values with a TTL (e.g. the
  cluster status snapshot).

Every operation raises `BrokerError` when the broker cannot be reached; none
of them retries for long (callers own their retry loops). Subscriptions
survive broker restarts: the implementation reconnects and re-subscribes by
itself (messages published in between are lost, see above).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

MessageHandler = Callable[[bytes], Awaitable[None] | None]

NODE_IDS = 1024  # node ids are 0..1023 (10 bits of kefu.ids)


class BrokerError(Exception):
    """The broker is unreachable or refused an operation."""


class Broker(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...

    # -- node channels ------------------------------------------------------
    async def publish(self, node: str, data: bytes) -> int:
        """Send one message to `node`; the number of subscribers that got it."""

    async def publish_batch(self, node: str, batch: Sequence[bytes]) -> int:
        """Send messages to `node` in one round trip, in order; as `publish`."""

    async def subscribe(self, node: str, handler: MessageHandler) -> None:
        """Deliver every message published to `node` to `handler`, in order."""

    async def unsubscribe(self, node: str) -> None: ...

    # -- event stream to the leader ----------------------------------------
    async def append_event(self, data: bytes) -> str: ...
    async def append_events(self, batch: Sequence[bytes]) -> list[str]:
        """Append in order, in one round trip; the ids given."""

    async def read_events(
        self, after: str, block_ms: int, count: int = 512
    ) -> list[tuple[str, bytes]]:
        """Entries after id `after` ("0": from the start), waiting up to `block_ms` for one."""

    async def ack_events(self, upto: str) -> None: ...
    async def acked_events(self) -> str:
        """The last id acked by any leader ("0" if none)."""

    # -- the lease ------------------------------------------------------------
    async def acquire_lease(self, node: str, ttl: float, floor: int = 0) -> int | None:
        """The fencing token if `node` now holds the lease, None if another node does."""

    async def renew_lease(self, node: str, token: int, ttl: float) -> bool: ...
    async def release_lease(self, node: str, token: int) -> None: ...
    async def lease_holder(self) -> tuple[str, int] | None:
        """(node, token) of the current holder, if any."""

    # -- presence, node ids and shared values --------------------------------
    async def heartbeat(self, node: str, ttl: float) -> None: ...
    async def leave(self, node: str) -> None:
        """Stop counting `node` as live at once (a clean shutdown)."""

    async def live_nodes(self) -> list[str]: ...
    async def claim_node_id(self, owner: str, ttl: float, wanted: int | None = None) -> int | None:
        """Claim (or renew) a node id for `owner`.

        With `wanted`: that id, or None if another owner holds it. Without: the
        next free id of a shared counter (INCR), or None if all are taken.
        """

    async def put(self, key: str, value: bytes, ttl: float) -> None: ...
    async def get(self, key: str) -> bytes | None: ...
