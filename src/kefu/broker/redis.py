"""The Redis broker (redis.asyncio): node channels, the event stream, the lease, presence.

Keys (all under `prefix`, default `kefu:`):

* `node:<node>`: the pub/sub channel of a node. `publish_batch` packs the
  messages into one PUBLISH (4-byte big-endian length before each), so a
  burst of frames to one node costs one round trip.
* `events`: the event stream (XADD with `MAXLEN ~ maxlen`, XREAD);
  `events:acked` the last id a leader acked.
* `lease` = "<node> <token>" with a TTL (SET NX PX in a script); `fence`
  the fencing counter. A new token is max(INCR, Redis time in ms, floor + 1),
  so tokens keep increasing even across a Redis restart that lost `fence`.
* `hb:<node>` (a key with a TTL) and `nodes` (a sorted set by expiry time,
  using Redis's clock) for presence; `nodeid:<n>` and `nodeid:seq` for node
  ids; `value:<key>` for shared values.

Failure handling: every command fails fast with `BrokerError` (one immediate
retry on a fresh connection, for pooled connections that a Redis restart
left dead); callers own their retry loops. The subscription is the only
loop in here: it reconnects with capped exponential backoff (50 ms to 1 s)
and re-subscribes, so a node hears its channel again after Redis comes
back. Blocking XREADs use their own connection pool so they never starve
ordinary commands.

Limits: single Redis server (not Redis Cluster: the scripts touch keys they
compute). Messages published while a subscriber is reconnecting are lost
for it (at-most-once); `publish` then reports 0 receivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import struct
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from kefu.broker.base import NODE_IDS, BrokerError, MessageHandler

log = logging.getLogger("kefu.broker.redis")

_LEN = struct.Struct(">I")

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token = redis.call('INCR', KEYS[2])
local floor = math.max(ms, tonumber(ARGV[3]) + 1)
if token < floor then
  token = floor
  redis.call('SET', KEYS[2], string.format('%d', token))
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. string.format('%d', token), 'PX', ARGV[2])
return token
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_HEARTBEAT = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ms + tonumber(ARGV[2]), ARGV[1])
return 1
"""
_LIVE = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
_CLAIM = """
local function claim(id)
  local k = ARGV[4] .. id
  local cur = redis.call('GET', k)
  if cur == false or cur == ARGV[1] then
    redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
    return true
  end
  return false
end
if ARGV[3] ~= '' then
  if claim(ARGV[3]) then return tonumber(ARGV[3]) end
  return -1
end
for i = 1, tonumber(ARGV[5]) do
  local id = redis.call('INCR', KEYS[1]) % tonumber(ARGV[5])
  if claim(tostring(id)) then return id end
end
return -1
"""


def pack(batch: Sequence[bytes]) -> bytes:
    return b"".join(_LEN.pack(len(d)) + d for d in batch)


def unpack(data: bytes) -> list[bytes]:
    out, i, n = [], 0, len(data)
    while i + 4 <= n:
        (size,) = _LEN.unpack_from(data, i)
        i += 4
        out.append(data[i : i + size])
        i += size
    return out


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


@contextlib.asynccontextmanager
async def _errors(what: str) -> AsyncIterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise BrokerError(f"redis {what}: {type(exc).__name__}: {exc}") from exc


class RedisBroker:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "kefu:",
        maxlen: int = 100_000,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.maxlen = maxlen
        self.timeout = timeout
        self._redis: Redis | None = None
        self._blocking: Redis | None = None
        self._handlers: dict[str, MessageHandler] = {}
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._scripts: dict[str, Any] = {}
        self._subscribed = asyncio.Event()
        self.reconnects = 0  # subscriptions re-established after a loss (`/metrics`)

    # -- lifecycle ------------------------------------------------------------
    def _client(self, socket_timeout: float) -> Redis:
        return Redis.from_url(
            self.url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=5,
        )

    async def start(self) -> None:
        self._redis = self._client(self.timeout)
        self._blocking = self._client(self.timeout + 6.0)
        for name, src in (
            ("acquire", _ACQUIRE),
            ("renew", _RENEW),
            ("release", _RELEASE),
            ("heartbeat", _HEARTBEAT),
            ("live", _LIVE),
            ("claim", _CLAIM),
        ):
            self._scripts[name] = self._redis.register_script(src)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._close_pubsub()
        for client in (self._redis, self._blocking):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._redis = self._blocking = None

    @property
    def subscribed(self) -> bool:
        """This node hears its channel (False while the subscription reconnects)."""
        return self._subscribed.is_set()

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise BrokerError("broker is not started")
        return self._redis

    def _k(self, name: str) -> str:
        return self.prefix + name

    def channel(self, node: str) -> str:
        return self._k("node:" + node)

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        if self._redis is None:
            raise BrokerError("broker is not started")
        async with _errors(name):
            return await self._scripts[name](keys=keys, args=args)

    # -- node channels ----------------------------------------------------------
    async def publish(self, node: str, data: bytes) -> int:
        return await self.publish_batch(node, [data])

    async def publish_batch(self, node: str, batch: Sequence[bytes]) -> int:
        async with _errors("publish"):
            return int(await self.redis.publish(self.channel(node), pack(batch)))

    async def subscribe(self, node: str, handler: MessageHandler) -> None:
        self._handlers[self.channel(node)] = handler
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name="kefu-redis-subscriber"
            )
        elif self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):  # the listener re-subscribes
                await self._pubsub.subscribe(self.channel(node))
        # wait (briefly) for the first subscription, so a publish right after is heard
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout):
                await self._subscribed.wait()

    async def unsubscribe(self, node: str) -> None:
        channel = self.channel(node)
        self._handlers.pop(channel, None)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(channel)

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def _listen(self) -> None:
        delay = 0.05
        lost = False
        while True:
            try:
                self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                if self._handlers:
                    await self._pubsub.subscribe(*self._handlers)
                self._subscribed.set()
                if lost:
                    self.reconnects += 1
                    lost = False
                delay = 0.05
                while True:
                    msg = await self._pubsub.get_message(timeout=1.0)
                    if msg is None:
                        if not self._pubsub.subscribed and self._handlers:
                            await self._pubsub.subscribe(*self._handlers)
                        continue
                    await self._dispatch(msg)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                lost = True
                self._subscribed.clear()
                log.warning("redis subscription lost (%s); reconnecting in %.2fs", exc, delay)
            except Exception:
                lost = True
                self._subscribed.clear()
                log.exception("redis subscriber failed; reconnecting")
            await self._close_pubsub()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        channel = msg.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        handler = self._handlers.get(str(channel))
        data = msg.get("data")
        if handler is None or not isinstance(data, bytes):
            return
        for item in unpack(data):
            try:
                result = handler(item)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # one bad message must not end the subscription
                log.exception("node channel handler failed")

    # -- event stream ---------------------------------------------------------------
    async def append_event(self, data: bytes) -> str:
        return (await self.append_events([data]))[0]

    async def append_events(self, batch: Sequence[bytes]) -> list[str]:
        key = self._k("events")
        async with _errors("xadd"):
            pipe = self.redis.pipeline(transaction=False)
            for data in batch:
                pipe.xadd(key, {"d": data}, maxlen=self.maxlen, approximate=True)
            ids = await pipe.execute()
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def read_events(
        self, after: str, block_ms: int, count: int = 512
    ) -> list[tuple[str, bytes]]:
        if self._blocking is None:
            raise BrokerError("broker is not started")
        key = self._k("events")
        block = max(1, min(block_ms, 5000))
        async with _errors("xread"):
            reply: Any = await self._blocking.xread({key: after or "0"}, count=count, block=block)
        out: list[tuple[str, bytes]] = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                out.append((eid, fields.get(b"d", b"")))
        return out

    async def ack_events(self, upto: str) -> None:
        async with _errors("ack"):
            await self.redis.set(self._k("events:acked"), upto)

    async def acked_events(self) -> str:
        async with _errors("acked"):
            value: Any = await self.redis.get(self._k("events:acked"))
        return value.decode() if value else "0"

    # -- the lease ---------------------------------------------------------------------
    async def acquire_lease(self, node: str, ttl: float, floor: int = 0) -> int | None:
        token = await self._script(
            "acquire", [self._k("lease"), self._k("fence")], [node, _ms(ttl), int(floor)]
        )
        return None if token is None else int(token)

    async def renew_lease(self, node: str, token: int, ttl: float) -> bool:
        done = await self._script("renew", [self._k("lease")], [f"{node} {token}", _ms(ttl)])
        return bool(done)

    async def release_lease(self, node: str, token: int) -> None:
        await self._script("release", [self._k("lease")], [f"{node} {token}"])

    async def lease_holder(self) -> tuple[str, int] | None:
        async with _errors("lease"):
            value: Any = await self.redis.get(self._k("lease"))
        if not value:
            return None
        node, _, token = value.decode().rpartition(" ")
        return node, int(token)

    # -- presence, node ids, values --------------------------------------------------------
    async def heartbeat(self, node: str, ttl: float) -> None:
        await self._script("heartbeat", [self._k("hb:" + node), self._k("nodes")], [node, _ms(ttl)])

    async def leave(self, node: str) -> None:
        async with _errors("leave"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(self._k("hb:" + node))
            pipe.zrem(self._k("nodes"), node)
            await pipe.execute()

    async def live_nodes(self) -> list[str]:
        nodes = await self._script("live", [self._k("nodes")], [])
        return sorted(n.decode() if isinstance(n, bytes) else str(n) for n in nodes)

    async def claim_node_id(self, owner: str, ttl: float, wanted: int | None = None) -> int | None:
        got = await self._script(
            "claim",
            [self._k("nodeid:seq")],
            [owner, _ms(ttl), "" if wanted is None else str(wanted), self._k("nodeid:"), NODE_IDS],
        )
        return None if int(got) < 0 else int(got)

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        async with _errors("set"):
            await self.redis.set(self._k("value:" + key), value, px=_ms(ttl))

    async def get(self, key: str) -> bytes | None:
        async with _errors("get"):
            value: Any = await self.redis.get(self._k("value:" + key))
        return bytes(value) if value is not None else None
