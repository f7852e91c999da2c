"""The Broker protocol: what nodes of one deployment share besides the database.

Semantics (every implementation must pass tests/broker/test_contract.py):

* **Node channels** (`publish`/`subscribe`): at-most-once, ordered per
  (publisher, receiving node). A message to a node that is not listening is
  lost; that is fine because SQL is the truth and clients replay on resume.
  `publish` never blocks on a slow receiver.
* **Event stream** (`append_event`/`read_events`): at-least-once, one total
  order, kept for a bounded length. Nodes append lifecycle events; the
  leader reads them in order and records how far it got (`ack_events`), so a
  new leader continues where the old one stopped.
* **Lease** (`acquire_lease`/`renew_lease`/`release_lease`): at most one
  holder at a time; each successful acquisition returns a fencing token that
  is larger than every earlier one. A holder that fails to renew within the
  TTL must stop acting as leader before the TTL ends.
* **Presence** (`heartbeat`/`live_nodes`): a node is live while its
  heartbeat key has not expired.
* **Shared values** (`put`/`get`): small values with a TTL (e.g. the
  cluster status snapshot).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

MessageHandler = Callable[[bytes], Awaitable[None] | None]


class BrokerError(Exception):
    """The broker is unreachable or refused an operation."""


class Broker(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...

    # -- node channels ------------------------------------------------------
    async def publish(self, node: str, data: bytes) -> None: ...
    async def subscribe(self, node: str, handler: MessageHandler) -> None:
        """Deliver every message published to `node` to `handler`, in order."""

    # -- event stream to the leader ----------------------------------------
    async def append_event(self, data: bytes) -> str: ...
    async def read_events(
        self, after: str, block_ms: int, count: int = 512
    ) -> list[tuple[str, bytes]]: ...
    async def ack_events(self, upto: str) -> None: ...
    async def acked_events(self) -> str:
        """The last id acked by any leader ("0" if none)."""

    # -- the lease ------------------------------------------------------------
    async def acquire_lease(self, node: str, ttl: float) -> int | None: ...
    async def renew_lease(self, node: str, token: int, ttl: float) -> bool: ...
    async def release_lease(self, node: str, token: int) -> None: ...

    # -- presence and shared values -----------------------------------------
    async def heartbeat(self, node: str, ttl: float) -> None: ...
    async def live_nodes(self) -> list[str]: ...
    async def put(self, key: str, value: bytes, ttl: float) -> None: ...
    async def get(self, key: str) -> bytes | None: ...
