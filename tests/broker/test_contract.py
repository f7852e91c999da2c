"""The Broker contract (see kefu/broker/base.py): every implementation must pass it."""

from __future__ import annotations

import asyncio
import contextlib
import time

from .conftest import MakeBroker

# TTLs the tests let run out, and waits past them. A value set with SHORT_TTL
# is checked before it runs out: a whole second, so that a step between the
# two taking longer on a loaded machine is out of the question. Waits only
# have to be longer than the TTL, which a sleep always is.
SHORT_TTL = 1.0
PAST_TTL = SHORT_TTL + 0.1


class Inbox:
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.event = asyncio.Event()

    def __call__(self, data: bytes) -> None:
        self.got.append(data)
        self.event.set()

    async def wait_for(self, n: int, timeout: float = 3.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            self.event.clear()
            left = deadline - time.monotonic()
            assert left > 0, f"got {len(self.got)} of {n} messages"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), left)
        return self.got


# -- node channels ----------------------------------------------------------------
async def test_publish_reaches_the_subscriber_in_order(make_broker: MakeBroker) -> None:
    a, b = await make_broker(), await make_broker()
    inbox = Inbox()
    await a.subscribe("node-a", inbox)
    sent = []
    for i in range(50):
        data = f"m{i}".encode()
        sent.append(data)
        assert await b.publish("node-a", data) >= 1
    batch = [f"b{i}".encode() * (i % 7 + 1) for i in range(200)] + [b"", b"\x00\xff" * 300]
    assert await b.publish_batch("node-a", batch) >= 1
    sent += batch
    assert await inbox.wait_for(len(sent)) == sent


async def test_publish_to_nobody_is_lost_and_says_so(make_broker: MakeBroker) -> None:
    a, b = await make_broker(), await make_broker()
    assert await b.publish("nobody", b"x") == 0
    inbox = Inbox()
    await a.subscribe("node-a", inbox)
    assert await b.publish("node-a", b"1") == 1
    await inbox.wait_for(1)
    await a.unsubscribe("node-a")
    await asyncio.sleep(0.05)
    assert await b.publish("node-a", b"2") == 0
    await asyncio.sleep(0.05)
    assert inbox.got == [b"1"]


async def test_publish_does_not_run_the_handler_inline(make_broker: MakeBroker) -> None:
    """The handler never runs inside `publish`, in the publisher's task (base.py's contract)."""
    a = await make_broker()
    inbox = Inbox()
    tasks: list[asyncio.Task[object] | None] = []

    def handler(data: bytes) -> None:
        tasks.append(asyncio.current_task())
        inbox(data)

    await a.subscribe("me", handler)
    await a.publish("me", b"self")  # a node may publish to itself
    assert await inbox.wait_for(1) == [b"self"]
    assert tasks != [asyncio.current_task()], "the handler ran inline, in the publisher's task"


async def test_async_handlers_keep_order(make_broker: MakeBroker) -> None:
    a, b = await make_broker(), await make_broker()
    got: list[bytes] = []

    async def handler(data: bytes) -> None:
        await asyncio.sleep(0)
        got.append(data)

    await a.subscribe("node-a", handler)
    await b.publish_batch("node-a", [b"1", b"2", b"3"])
    deadline = time.monotonic() + 3
    while len(got) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert got == [b"1", b"2", b"3"]


# -- event stream ---------------------------------------------------------------------
async def test_event_stream_total_order_and_ack(make_broker: MakeBroker) -> None:
    a, b = await make_broker(), await make_broker()
    assert await a.acked_events() == "0"
    assert await a.read_events("0", block_ms=10) == []
    ids = [await a.append_event(b"first")]
    ids += await b.append_events([f"e{i}".encode() for i in range(20)])
    ids += await a.append_events([b"last"])
    assert len(set(ids)) == 22
    entries = await b.read_events("0", block_ms=10, count=1000)
    assert [i for i, _ in entries] == ids
    assert [d for _, d in entries] == [b"first", *(f"e{i}".encode() for i in range(20)), b"last"]
    page = await b.read_events(ids[4], block_ms=10, count=5)
    assert [i for i, _ in page] == ids[5:10]
    assert await b.read_events(ids[-1], block_ms=10) == []
    await a.ack_events(ids[9])
    assert await b.acked_events() == ids[9]
    rest = await b.read_events(await b.acked_events(), block_ms=10, count=1000)
    assert next(d for _, d in rest) == b"e9"


async def test_read_events_blocks_until_an_append(make_broker: MakeBroker) -> None:
    a, b = await make_broker(), await make_broker()
    start = time.monotonic()
    assert await a.read_events("0", block_ms=200) == []
    assert time.monotonic() - start >= 0.15
    # Redis blocks 5 s at most: a reader that returns sooner was woken by the append
    block = 5.0
    called = time.monotonic()
    reader = asyncio.ensure_future(a.read_events("0", block_ms=int(block * 1000)))
    await asyncio.sleep(0.1)
    assert not reader.done()
    eid = await b.append_event(b"wake")
    assert await asyncio.wait_for(reader, 2 * block) == [(eid, b"wake")]
    assert time.monotonic() - called < block, "the reader waited out its block: no wake-up"


# -- the lease ----------------------------------------------------------------------------
async def test_lease_has_one_holder_and_increasing_tokens(make_broker: MakeBroker) -> None:
    a, b = await make_broker(), await make_broker()
    assert await a.lease_holder() is None
    t1 = await a.acquire_lease("n1", ttl=5)
    assert t1 is not None
    assert await b.acquire_lease("n2", ttl=5) is None
    assert await a.acquire_lease("n1", ttl=5) is None  # not re-entrant: renew instead
    assert await b.lease_holder() == ("n1", t1)
    assert await a.renew_lease("n1", t1, ttl=5)
    assert not await b.renew_lease("n2", t1, ttl=5)
    assert not await a.renew_lease("n1", t1 - 1, ttl=5)
    await b.release_lease("n2", t1)  # not the holder: no effect
    assert await b.lease_holder() == ("n1", t1)
    await a.release_lease("n1", t1)
    assert await a.lease_holder() is None
    t2 = await b.acquire_lease("n2", ttl=5)
    assert t2 is not None and t2 > t1
    assert not await a.renew_lease("n1", t1, ttl=5)


async def test_lease_expires_and_respects_the_floor(make_broker: MakeBroker) -> None:
    a, b = await make_broker(), await make_broker()
    t1 = await a.acquire_lease("n1", ttl=SHORT_TTL)
    assert t1 is not None
    await asyncio.sleep(PAST_TTL)
    assert await a.lease_holder() is None
    assert not await a.renew_lease("n1", t1, ttl=SHORT_TTL)  # too late
    floor = t1 + 10**9
    t2 = await b.acquire_lease("n2", ttl=5, floor=floor)
    assert t2 is not None and t2 > floor
    await b.release_lease("n2", t2)
    t3 = await a.acquire_lease("n1", ttl=5)
    assert t3 is not None and t3 > t2


async def test_renewal_keeps_the_lease(make_broker: MakeBroker) -> None:
    a, b = await make_broker(), await make_broker()
    token = await a.acquire_lease("n1", ttl=SHORT_TTL)
    assert token is not None
    for _ in range(6):  # 1.5 s in all: past the TTL, renewed every quarter of it
        await asyncio.sleep(SHORT_TTL / 4)
        assert await a.renew_lease("n1", token, ttl=SHORT_TTL)
    assert await b.acquire_lease("n2", ttl=SHORT_TTL) is None


# -- presence, node ids, values -----------------------------------------------------------------
async def test_heartbeat_and_live_nodes(make_broker: MakeBroker) -> None:
    a, b = await make_broker(), await make_broker()
    assert await a.live_nodes() == []
    await a.heartbeat("n1", ttl=5)
    await b.heartbeat("n2", ttl=SHORT_TTL)
    assert await b.live_nodes() == ["n1", "n2"]
    await asyncio.sleep(PAST_TTL)
    assert await a.live_nodes() == ["n1"]
    await b.heartbeat("n2", ttl=5)
    assert await a.live_nodes() == ["n1", "n2"]
    await a.leave("n1")
    assert await b.live_nodes() == ["n2"]


async def test_node_ids_never_collide(make_broker: MakeBroker) -> None:
    a, b = await make_broker(), await make_broker()
    ids = {await a.claim_node_id(f"owner{i}", ttl=5) for i in range(20)}
    assert None not in ids and len(ids) == 20
    assert all(0 <= i < 1024 for i in ids if i is not None)
    assert await b.claim_node_id("owner0", ttl=5, wanted=7) in (7, None)
    assert await a.claim_node_id("x", ttl=SHORT_TTL, wanted=900) == 900
    assert await b.claim_node_id("y", ttl=5, wanted=900) is None
    assert await a.claim_node_id("x", ttl=SHORT_TTL, wanted=900) == 900  # renewal
    await asyncio.sleep(PAST_TTL)
    assert await b.claim_node_id("y", ttl=5, wanted=900) == 900


async def test_shared_values(make_broker: MakeBroker) -> None:
    a, b = await make_broker(), await make_broker()
    assert await a.get("status") is None
    await a.put("status", b'{"x":1}', ttl=SHORT_TTL)
    assert await b.get("status") == b'{"x":1}'
    await b.put("status", b"2", ttl=5)
    assert await a.get("status") == b"2"
    await a.put("short", b"1", ttl=SHORT_TTL)
    await asyncio.sleep(PAST_TTL)
    assert await a.get("short") is None
