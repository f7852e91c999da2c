"""Fixtures for the Broker contract suite: one factory per implementation.

`make_broker()` gives a started broker; every broker of one test shares the
same backend (memory: one hub; Redis: one key prefix, wiped afterwards), so a
test can play several nodes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from kefu.broker.base import Broker
from kefu.broker.memory import MemoryBroker, MemoryHub
from support.services import REDIS_URL, redis_prefix, require_redis, wipe_redis

MakeBroker = Callable[[], Awaitable[Broker]]


@pytest.fixture(params=["memory", "redis"])
async def make_broker(request: pytest.FixtureRequest) -> AsyncIterator[MakeBroker]:
    brokers: list[Broker] = []
    prefix = redis_prefix()
    hub = MemoryHub()
    if request.param == "redis":
        require_redis()

    async def factory() -> Broker:
        broker: Broker
        if request.param == "memory":
            broker = MemoryBroker(hub)
        else:
            from kefu.broker.redis import RedisBroker

            broker = RedisBroker(REDIS_URL, prefix=prefix, timeout=2.0)
        await broker.start()
        brokers.append(broker)
        return broker

    factory.kind = request.param  # type: ignore[attr-defined]
    factory.prefix = prefix  # type: ignore[attr-defined]
    yield factory
    for broker in brokers:
        await broker.close()
    if request.param == "redis":
        wipe_redis(prefix)
