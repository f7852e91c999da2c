"""The in-process broker: one hub shared by the nodes of one process (tests, one node).

Same semantics as the Redis broker (see `base.py`), with the process as the
only machine: messages are handed to subscribers with `loop.call_soon`
(never inside `publish`), TTLs run on `time.monotonic`. Brokers made with
the same `MemoryHub` see each other; `open_broker("memory://NAME")` shares a
hub per name within the process.

Limits: no persistence; `close` of one broker does not affect the others.
`down()`/`up()` make every operation on the hub fail with `BrokerError`, to
test outage handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections import deque
from collections.abc import Sequence

from kefu.broker.base import NODE_IDS, BrokerError, MessageHandler


class MemoryHub:
    """What a Redis server would hold."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self.maxlen = maxlen
        self.subscribers: dict[str, tuple[MemoryBroker, MessageHandler]] = {}
        self.stream: deque[tuple[str, bytes]] = deque(maxlen=maxlen)
        self.last_ms = 0
        self.seq = 0
        self.acked = "0"
        self.lease: tuple[str, int, float] | None = None  # node, token, expires
        self.fence = 0
        self.heartbeats: dict[str, float] = {}
        self.node_ids: dict[int, tuple[str, float]] = {}
        self.node_seq = 0
        self.values: dict[str, tuple[bytes, float]] = {}
        self.available = True
        self.changed = asyncio.Event()  # binds to the loop that first waits on it

    def down(self) -> None:
        self.available = False

    def up(self) -> None:
        self.available = True

    def wake(self) -> None:
        self.changed.set()

    def next_id(self) -> str:
        ms = int(time.time() * 1000)
        if ms > self.last_ms:
            self.last_ms, self.seq = ms, 0
        else:
            self.seq += 1
        return f"{self.last_ms}-{self.seq}"


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


_HUBS: dict[str, MemoryHub] = {}


def named_hub(name: str) -> MemoryHub:
    """The process-wide hub called `name` (for `memory://NAME` URLs)."""
    hub = _HUBS.get(name)
    if hub is None:
        hub = _HUBS[name] = MemoryHub()
    return hub


class MemoryBroker:
    def __init__(self, hub: MemoryHub | None = None) -> None:
        self.hub = hub or MemoryHub()
        self._mine: set[str] = set()
        self._pending: set[asyncio.Future[None]] = set()
        self._closed = False

    def _check(self) -> MemoryHub:
        if self._closed:
            raise BrokerError("broker is closed")
        if not self.hub.available:
            raise BrokerError("memory hub is down")
        return self.hub

    async def start(self) -> None:
        self._check()

    async def close(self) -> None:
        for node in list(self._mine):
            self.hub.subscribers.pop(node, None)
        self._mine.clear()
        self._closed = True

    # -- node channels ------------------------------------------------------
    async def publish(self, node: str, data: bytes) -> int:
        return await self.publish_batch(node, [data])

    async def publish_batch(self, node: str, batch: Sequence[bytes]) -> int:
        hub = self._check()
        sub = hub.subscribers.get(node)
        if sub is None:
            return 0
        receiver, handler = sub
        loop = asyncio.get_running_loop()
        for data in batch:
            loop.call_soon(receiver._deliver, node, handler, bytes(data))
        return 1

    def _deliver(self, node: str, handler: MessageHandler, data: bytes) -> None:
        if self.hub.subscribers.get(node, (None, None))[1] is not handler:
            return  # unsubscribed meanwhile
        result = handler(data)
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def subscribe(self, node: str, handler: MessageHandler) -> None:
        self._check().subscribers[node] = (self, handler)
        self._mine.add(node)

    async def unsubscribe(self, node: str) -> None:
        if node in self._mine:
            self.hub.subscribers.pop(node, None)
            self._mine.discard(node)

    # -- event stream ---------------------------------------------------------
    async def append_event(self, data: bytes) -> str:
        return (await self.append_events([data]))[0]

    async def append_events(self, batch: Sequence[bytes]) -> list[str]:
        hub = self._check()
        ids = []
        for data in batch:
            entry_id = hub.next_id()
            hub.stream.append((entry_id, bytes(data)))
            ids.append(entry_id)
        hub.wake()
        return ids

    async def read_events(
        self, after: str, block_ms: int, count: int = 512
    ) -> list[tuple[str, bytes]]:
        hub = self._check()
        deadline = time.monotonic() + block_ms / 1000
        floor = _key(after) if after not in ("", "0") else (0, 0)
        while True:
            out = [(i, d) for i, d in hub.stream if _key(i) > floor][:count]
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            hub.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await hub.changed.wait()
            hub = self._check()

    async def ack_events(self, upto: str) -> None:
        self._check().acked = upto

    async def acked_events(self) -> str:
        return self._check().acked

    # -- the lease --------------------------------------------------------------
    def _lease(self) -> tuple[str, int, float] | None:
        hub = self.hub
        if hub.lease is not None and hub.lease[2] <= time.monotonic():
            hub.lease = None
        return hub.lease

    async def acquire_lease(self, node: str, ttl: float, floor: int = 0) -> int | None:
        hub = self._check()
        if self._lease() is not None:
            return None
        hub.fence = max(hub.fence + 1, floor + 1, int(time.time() * 1000))
        hub.lease = (node, hub.fence, time.monotonic() + ttl)
        return hub.fence

    async def renew_lease(self, node: str, token: int, ttl: float) -> bool:
        hub = self._check()
        lease = self._lease()
        if lease is None or lease[:2] != (node, token):
            return False
        hub.lease = (node, token, time.monotonic() + ttl)
        return True

    async def release_lease(self, node: str, token: int) -> None:
        hub = self._check()
        lease = self._lease()
        if lease is not None and lease[:2] == (node, token):
            hub.lease = None

    async def lease_holder(self) -> tuple[str, int] | None:
        self._check()
        lease = self._lease()
        return None if lease is None else (lease[0], lease[1])

    # -- presence, node ids, values -------------------------------------------------
    async def heartbeat(self, node: str, ttl: float) -> None:
        self._check().heartbeats[node] = time.monotonic() + ttl

    async def leave(self, node: str) -> None:
        self._check().heartbeats.pop(node, None)

    async def live_nodes(self) -> list[str]:
        hub = self._check()
        now = time.monotonic()
        for node in [n for n, t in hub.heartbeats.items() if t <= now]:
            del hub.heartbeats[node]
        return sorted(hub.heartbeats)

    async def claim_node_id(self, owner: str, ttl: float, wanted: int | None = None) -> int | None:
        hub = self._check()
        now = time.monotonic()
        for nid in [n for n, (_, t) in hub.node_ids.items() if t <= now]:
            del hub.node_ids[nid]
        if wanted is not None:
            held = hub.node_ids.get(wanted)
            if held is not None and held[0] != owner:
                return None
            hub.node_ids[wanted] = (owner, now + ttl)
            return wanted
        for _ in range(NODE_IDS):
            hub.node_seq += 1
            nid = hub.node_seq % NODE_IDS
            if nid not in hub.node_ids:
                hub.node_ids[nid] = (owner, now + ttl)
                return nid
        return None

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        self._check().values[key] = (bytes(value), time.monotonic() + ttl)

    async def get(self, key: str) -> bytes | None:
        hub = self._check()
        item = hub.values.get(key)
        if item is None or item[1] <= time.monotonic():
            hub.values.pop(key, None)
            return None
        return item[0]
