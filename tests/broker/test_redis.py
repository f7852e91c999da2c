"""Redis-only behaviour: the subscription comes back by itself, failures are BrokerError."""

from __future__ import annotations

import asyncio
import time

import pytest

from kefu.broker.base import BrokerError
from support.services import REDIS_URL, redis_prefix, require_redis, wipe_redis


@pytest.fixture
def prefix() -> str:
    require_redis()
    p = redis_prefix()
    yield p  # type: ignore[misc]
    wipe_redis(p)


async def test_subscription_survives_a_killed_connection(prefix: str) -> None:
    from redis.asyncio import Redis

    from kefu.broker.redis import RedisBroker

    a = RedisBroker(REDIS_URL, prefix=prefix)
    b = RedisBroker(REDIS_URL, prefix=prefix)
    await a.start()
    await b.start()
    got: list[bytes] = []
    try:
        await a.subscribe("n1", got.append)
        assert await b.publish("n1", b"before") == 1
        admin = Redis.from_url(REDIS_URL)
        try:
            await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        finally:
            await admin.aclose()
        deadline = time.monotonic() + 5
        while await b.publish("n1", b"after") == 0:  # nobody hears until it re-subscribed
            assert time.monotonic() < deadline, "the subscriber did not come back"
            await asyncio.sleep(0.05)
        while b"after" not in got:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert got[0] == b"before"
    finally:
        await a.close()
        await b.close()


async def test_unreachable_redis_raises_broker_error() -> None:
    from kefu.broker.redis import RedisBroker

    broker = RedisBroker("redis://127.0.0.1:1/0", prefix="x:", timeout=0.5)
    await broker.start()
    try:
        for call in (
            broker.publish("n", b"x"),
            broker.append_event(b"x"),
            broker.acquire_lease("n", 1.0),
            broker.live_nodes(),
            broker.get("k"),
            broker.read_events("0", 10),
        ):
            with pytest.raises(BrokerError):
                await call
    finally:
        await broker.close()
