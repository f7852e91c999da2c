"""Webhook parts in process: signing, which addresses are public, retries and giving up.

The worker runs here on a real SQLite store against the real local receiver
(`support.receiver`), with a retry window of seconds instead of 24 hours.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kefu.core.commands import Enqueue
from kefu.core.model import Role
from kefu.ids import IdGenerator
from kefu.server.metrics import WebhookDeliveries
from kefu.server.webhooks import DeliveryWorker, webhook_store
from kefu.server.webhooks.addresses import Refused, is_public, parse, resolve
from kefu.server.webhooks.pacing import FLOOR, MAX_WAIT, Pacer
from kefu.server.webhooks.sender import Attempt
from kefu.server.webhooks.signing import headers, new_secret, signature, verify
from kefu.server.webhooks.worker import MAX_DELAY
from kefu.store.base import Account
from kefu.store.migrate import upgrade
from kefu.store.sqlite import SqliteStore
from kefu.store.webhooks import DueDelivery, Webhook
from support.receiver import Receiver
from support.receiver import signature as receivers_signature

pytestmark = pytest.mark.timeout(60)


# -- signing ------------------------------------------------------------------------------------
def test_the_signature_covers_the_timestamp_and_the_body() -> None:
    secret, body = "s3cret-s3cret-s3cret", b'{"id":"1","event":"x","created_at":"t","data":{}}'
    signed = signature(secret, 1_700_000_000, body)
    assert signed.startswith("sha256=") and len(signed) == 7 + 64
    assert signed == receivers_signature(secret, "1700000000", body)  # as docs/api.md says
    assert verify(secret, "1700000000", body, signed)
    assert not verify(secret, "1700000001", body, signed)
    assert not verify(secret, "1700000000", body + b" ", signed)
    assert not verify("another secret!!", "1700000000", body, signed)
    assert not verify(secret, "17e8", body, signed)
    sent = headers(secret, "message.created", "0042", 1_700_000_000, body)
    assert sent == {
        "Content-Type": "application/json",
        "X-Kefu-Event": "message.created",
        "X-Kefu-Delivery": "0042",
        "X-Kefu-Timestamp": "1700000000",
        "X-Kefu-Signature": signed,
    }
    assert new_secret() != new_secret() and len(new_secret()) > 40


# -- addresses ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.31.255.255", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # shared (carrier-grade NAT)
        ("0.0.0.0", False),
        ("224.0.0.251", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fd12:3456::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.216.34", True),
        ("ff02::1", False),
        ("not an address", False),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_parse_keeps_what_the_request_needs() -> None:
    t = parse("https://Hooks.Example.com/in/kefu?token=abc#frag")
    assert (t.scheme, t.host, t.port, t.path) == (
        "https",
        "hooks.example.com",
        443,
        "/in/kefu?token=abc",
    )
    assert t.host_header == "hooks.example.com"
    assert t.at("93.184.216.34") == "https://93.184.216.34:443/in/kefu?token=abc"
    v6 = parse("http://[2606:2800::1]:8080")
    assert v6.host_header == "[2606:2800::1]:8080" and v6.path == "/"
    assert v6.at("2606:2800::1") == "http://[2606:2800::1]:8080/"
    for bad in (
        "ftp://example.com/",
        "//example.com/",
        "http://user:pw@example.com/",
        "http://example.com:70000/",
        "http://exa mple.com/",
        "http:///path",
        "https://" + "a" * 3000 + ".com/",
    ):
        with pytest.raises(Refused):
            parse(bad)


async def test_resolve_refuses_private_addresses_unless_allowed() -> None:
    for url in ("http://127.0.0.1:9/", "http://localhost:9/", "http://[::1]:9/"):
        with pytest.raises(Refused, match="not a public address"):
            await resolve(parse(url), allow_private=False)
    assert await resolve(parse("http://127.0.0.1:9/"), allow_private=True) == ["127.0.0.1"]
    assert await resolve(parse("http://93.184.216.34/"), allow_private=False) == ["93.184.216.34"]
    with pytest.raises(Refused, match="cannot resolve"):
        await resolve(parse("http://no-such-host.invalid/"), allow_private=True)


# -- retries ------------------------------------------------------------------------------------
class _NoStore:
    pass


def _worker(base: float = 10.0, retry_for: float = 86400.0, now: float = 1000.0) -> DeliveryWorker:
    return DeliveryWorker(
        _NoStore(),  # type: ignore[arg-type]
        IdGenerator(),
        WebhookDeliveries(),
        retry_base=base,
        allow_private=False,
        retry_for=retry_for,
        clock=lambda: now,
    )


def _due(attempts: int, created_at: float = 1000.0) -> DueDelivery:
    return DueDelivery("d1", "w1", "u1", "x", "{}", attempts, created_at, "https://x/", "s")


def test_retries_double_with_jitter_up_to_an_hour_then_give_up() -> None:
    worker = _worker()
    failed = Attempt(False, 500)
    for attempts in range(12):
        out = worker.outcome(_due(attempts), failed)
        assert out.next_at is not None and not out.ok
        wait = out.next_at - 1000.0
        expected = min(MAX_DELAY, 10.0 * 2**attempts)
        assert 0.75 * expected <= wait <= 1.25 * expected
    assert worker.metrics.counts["failed"] == 12
    # the last retry is at the end of the window, not after it
    late = _worker(now=1000.0 + 86400.0 - 5).outcome(_due(20), failed)
    assert late.next_at == 1000.0 + 86400.0
    # then it is given up on
    gone = _worker(now=1000.0 + 86400.0).outcome(_due(21), Attempt(False, error="refused"))
    assert gone.next_at is None and not gone.ok and gone.error == "refused"
    ok = _worker().outcome(_due(3), Attempt(True, 204))
    assert ok.ok and ok.status == 204 and ok.next_at is None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    upgrade(url)
    s = SqliteStore(url)
    await s.start()
    yield s
    await s.close()


async def test_a_delivery_that_keeps_failing_is_marked_failed_and_the_next_goes(
    store: SqliteStore,
) -> None:
    receiver = await Receiver().start()
    # the first delivery never gets a success; the one after it does
    receiver.answer = lambda got: 500 if got.id == receiver.received[0].id else 200
    new_id = IdGenerator()
    hook = Webhook(new_id(), receiver.url, ("conversation.queued",), time.time(), "s" * 32)
    receiver.use(hook.secret)
    await store.create_webhook(hook)
    await store.refresh_subscriptions()
    user = Account("u-hooked", "hooked", Role.USER)
    await store.create_account(user)
    store.write(Enqueue(user.id, 1.0))
    store.write(Enqueue(user.id, 2.0))
    await store.flush()
    metrics = WebhookDeliveries()
    worker = DeliveryWorker(
        webhook_store(store), new_id, metrics, retry_base=0.2, allow_private=True, retry_for=1.5
    )
    worker.start()
    try:
        await receiver.wait_for("the second", lambda got: metrics.counts["delivered"] >= 1)
    finally:
        await worker.stop()
        await receiver.close()
    listed = {d.status: d for d in await store.list_deliveries(hook.id, None, 10)}
    assert set(listed) == {"failed", "delivered"}
    failed = listed["failed"]
    assert failed.attempts >= 2 and failed.last_status == 500 and failed.finished_at is not None
    assert failed.finished_at - failed.created_at >= 1.5  # retried for the whole window
    assert metrics.counts["failed"] == failed.attempts - 1 and metrics.counts["dropped"] == 1
    bodies = [r.body for r in receiver.received]
    assert {b["id"] for b in bodies} == {failed.id, listed["delivered"].id}
    assert bodies[-1]["data"]["queued_at"].endswith(":02.000000Z")
    assert all(r.signed for r in receiver.received)


# -- pacing -------------------------------------------------------------------------------------
class _Clocks:
    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def run(self, seconds: float, cpu: float) -> None:
        """`seconds` pass, in which the process uses `cpu` seconds of CPU."""
        self.wall += seconds
        self.cpu += cpu


def test_the_worker_takes_a_share_of_what_the_chat_leaves() -> None:
    clocks = _Clocks()
    pacer = Pacer(0.1, 0.05, wall=lambda: clocks.wall, cpu=lambda: clocks.cpu)

    def cycle(round_s: float, chat_load: float, wait: float) -> float:
        clocks.run(wait, wait * chat_load)  # the chat, while the worker waits
        pacer.begin()
        clocks.run(round_s, round_s)  # the worker's round (the chat waits meanwhile)
        return pacer.wait()

    first = cycle(0.01, 0.0, 0.0)  # nothing known of the chat yet: the whole budget
    assert first == pytest.approx(0.09)
    idle = cycle(0.01, 0.0, first)
    assert idle == pytest.approx(0.09) and pacer.load == pytest.approx(0.0)
    half = cycle(0.01, 0.5, idle)  # the chat at half a core: a quarter of the budget
    assert pacer.load == pytest.approx(0.45, abs=0.01)
    assert half > 3 * idle
    busy = cycle(0.01, 1.0, half)  # the chat takes the whole core: the floor, at most 2 s
    assert pacer.load == pytest.approx(1.0, abs=0.05)
    assert busy == pytest.approx(min(MAX_WAIT, 0.01 * (1 - FLOOR) / FLOOR))
    short = cycle(0.001, 0.0, busy)  # a quick round still leaves the gap before the next
    assert short == pytest.approx(0.049, abs=0.002)


def test_the_chat_running_between_a_rounds_steps_is_not_charged_to_the_worker() -> None:
    clocks = _Clocks()
    pacer = Pacer(0.1, 0.0, wall=lambda: clocks.wall, cpu=lambda: clocks.cpu)

    def cycle(steps_s: float, chat_in_round_s: float, wait: float, busy: bool) -> float:
        clocks.run(wait, 0.0)  # the chat idle while the worker waits
        pacer.begin()
        clocks.run(steps_s + chat_in_round_s, steps_s + chat_in_round_s)
        return pacer.wait(steps_s if busy else None)

    # a round whose steps held the loop 2 ms, with 8 ms of chat work between them
    whole = cycle(0.002, 0.008, 0.0, busy=False)
    assert whole == pytest.approx(0.010 * 0.9 / 0.1)  # charged for all 10 ms
    pacer = Pacer(0.1, 0.0, wall=lambda: clocks.wall, cpu=lambda: clocks.cpu)
    first = cycle(0.002, 0.008, 0.0, busy=True)
    assert first == pytest.approx(0.002 * 0.9 / 0.1)  # charged for its 2 ms only
    cycle(0.002, 0.008, first, busy=True)
    # the 8 ms between the steps are the chat's load: 8 ms of a 28 ms cycle
    assert pacer.load == pytest.approx(0.008 / (first + 0.010), abs=0.01)


async def test_a_sender_process_that_hangs_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that reads its jobs and never answers: the attempt fails (to be made again
    later) instead of holding its place forever, and the child is killed for a new one."""
    import sys

    from kefu.server.webhooks import process

    monkeypatch.setattr(process, "ANSWER_SLACK", 0.5)
    monkeypatch.setattr(process, "RESTART_AFTER", 0.0)
    sender = process.ProcessSender(allow_private=True, concurrency=1, timeout=0.5)
    sender.argv = [sys.executable, "-c", "import sys\nfor _ in sys.stdin: pass"]
    due = DueDelivery("d1", "w1", "s", "e", "{}", 0, 1.0, "http://127.0.0.1:9/", "secret")
    try:
        attempt = await asyncio.wait_for(sender.send(due), 30)
        assert not attempt.ok and attempt.error == "no answer from the sender process"
        hung = sender._proc
        assert hung is not None
        assert await asyncio.wait_for(hung.wait(), 10) != 0  # killed
        again = await asyncio.wait_for(sender.send(due), 30)  # a new child takes the job
        assert not again.ok and sender._proc is not hung
    finally:
        await sender.close()
