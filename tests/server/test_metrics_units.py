"""The counters behind /metrics, without a server: histograms, the queue wait, shared checks."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kefu.broker.base import BrokerError
from kefu.core import commands as c
from kefu.core.errors import NotPermitted
from kefu.core.model import CloseReason, Role
from kefu.histogram import SECONDS_FAST, Histogram
from kefu.protocol import frames as f
from kefu.server.metrics import Metrics
from kefu.server.probes import Readiness, Shared
from kefu.store.base import StoreUnavailable


def test_buckets_are_upper_bounds_inclusive() -> None:
    h = Histogram((1, 2, 5))
    for v in (0.5, 1.0, 1.5, 2.0, 5.0, 7.0):
        h.observe(v)
    assert h.cumulative() == [("1.0", 2), ("2.0", 4), ("5.0", 5), ("+Inf", 6)]
    assert h.count == 6
    assert h.sum == pytest.approx(17.0)


def test_bounds_must_increase() -> None:
    with pytest.raises(ValueError):
        Histogram((1, 1, 2))
    with pytest.raises(ValueError):
        Histogram(())


@given(
    now=st.floats(min_value=1e9, max_value=2e9),
    ages=st.lists(st.floats(min_value=0, max_value=20), max_size=200),
)
def test_a_batch_counts_as_one_observation_each(now: float, ages: list[float]) -> None:
    """`observe_since` (a few bisects per batch) agrees with observing one by one."""
    starts = [now - a for a in ages]
    one_by_one, batch = Histogram(SECONDS_FAST), Histogram(SECONDS_FAST)
    for s in starts:
        one_by_one.observe(now - s)
    batch.observe_since(now, list(starts))
    assert batch.count == one_by_one.count == len(ages)
    # the same buckets, but for a latency on a bound that rounding puts on either side
    for (le, a), (_, b) in zip(batch.cumulative(), one_by_one.cumulative(), strict=True):
        edge = le != "+Inf" and any(abs(now - s - float(le)) < 1e-6 for s in starts)
        assert a == b or edge, (le, a, b)
    assert batch.sum == pytest.approx(one_by_one.sum, abs=1e-3)


def test_the_queue_wait_counts_conversations_opened_from_the_queue_only() -> None:
    m = Metrics()
    m.written(c.Enqueue("u1", 100.0))
    m.written(c.Dequeue("u1"))
    m.written(c.OpenConversation("c1", "u1", "w1", 130.0, 100.0))
    assert m.queue_wait.count == 1
    assert m.queue_wait.sum == pytest.approx(30.0)
    # a transfer: a new conversation with the user's first arrival, but no dequeue before it
    m.written(c.CloseConversation("c1", CloseReason.TRANSFERRED, 200.0))
    m.written(c.OpenConversation("c2", "u1", "w2", 200.0, 100.0))
    assert m.queue_wait.count == 1
    # a dequeue of someone else, then an open: not a wait either
    m.written(c.Dequeue("u2"))
    m.written(c.OpenConversation("c3", "u3", "w1", 210.0, 205.0))
    assert m.queue_wait.count == 1


def test_frame_labels_stay_within_the_protocol() -> None:
    m = Metrics()
    m.invalid({"type": "message_text", "payload": {}})
    m.invalid({"type": "x" * 40})  # a client's made-up type is not a label value
    m.invalid(None)
    m.refused(f.Ready(), NotPermitted("no"))
    m.refused(f.Connect(), StoreUnavailable("down"))
    m.unread("rate_limited")
    assert dict(m.frames_refused) == {
        ("message_text", "invalid"): 1,
        ("unknown", "invalid"): 2,
        ("ready", "refused"): 1,
        ("connect", "unavailable"): 1,
        ("unknown", "rate_limited"): 1,
    }
    m.closed(Role.USER, None)
    m.closed(Role.WAITER, 4409)
    assert dict(m.closes) == {("user", "peer"): 1, ("waiter", "4409"): 1}
    m.login_refused(401)
    m.login_refused(429)
    m.login_refused(418)
    assert dict(m.login_failures) == {"bad_credentials": 1, "throttled": 1, "other": 1}


def test_acks_of_one_loop_pass_are_observed_together() -> None:
    m = Metrics()
    m.ack_starts.extend([time.time() - 0.01, time.time() - 0.002])
    m.acks_pushed()
    assert m.ack_starts == []
    assert m.ack_seconds.count == 2
    assert 0.012 <= m.ack_seconds.sum < 1.0


async def test_shared_checks_run_once_for_callers_that_overlap() -> None:
    calls = 0
    release = asyncio.Event()

    async def work() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "done"

    shared = Shared(work)
    first = asyncio.ensure_future(shared(5))
    second = asyncio.ensure_future(shared(5))
    await asyncio.sleep(0.01)
    release.set()
    assert await first == await second == "done"
    assert calls == 1
    assert await shared(5) == "done"  # the next call after it ended runs again
    assert calls == 2


async def test_a_shared_check_that_hangs_times_out_its_callers_only() -> None:
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "late"

    shared = Shared(work)
    with pytest.raises(TimeoutError):
        await shared(0.01)
    with pytest.raises(TimeoutError):
        await shared(0.01)  # joins the same call, still running
    release.set()
    assert await shared(5) == "late"  # the call was never cancelled by the timeouts


class FakeStore:
    def __init__(self) -> None:
        self.error: BaseException | None = None

    async def ping(self) -> None:
        if self.error is not None:
            raise self.error


class FakeBroker:
    def __init__(self) -> None:
        self.holder: tuple[str, int] | None = ("1-abc", 7)
        self.error: BaseException | None = None

    async def lease_holder(self) -> tuple[str, int] | None:
        if self.error is not None:
            raise self.error
        return self.holder


async def test_readiness_reasons_per_check() -> None:
    store, broker = FakeStore(), FakeBroker()
    listening = [True]
    ready = Readiness(store, broker, lambda: False, lambda: listening[0])  # type: ignore[arg-type]
    assert await ready.check() == {"store": "ok", "broker": "ok", "leader": "ok"}
    broker.holder = None
    assert (await ready.check())["leader"] == "no node holds the lease"
    broker.holder = ("1-abc", 7)
    listening[0] = False  # the subscription is reconnecting: other nodes' frames are lost
    assert (await ready.check())["broker"] == "not subscribed to this node's channel"
    listening[0] = True
    broker.error = BrokerError("redis lease: ConnectionError")
    store.error = StoreUnavailable("OperationalError: disk I/O error")
    assert await ready.check() == {
        "store": "write failed (StoreUnavailable)",
        "broker": "unreachable (BrokerError)",
        "leader": "unknown: the broker does not answer",
    }


async def test_a_leader_knows_a_leader_is_there_without_the_broker() -> None:
    broker = FakeBroker()
    broker.error = BrokerError("down")
    ready = Readiness(FakeStore(), broker, lambda: True)  # type: ignore[arg-type]
    checks = await ready.check()
    assert checks["leader"] == "ok" and checks["broker"] == "unreachable (BrokerError)"
