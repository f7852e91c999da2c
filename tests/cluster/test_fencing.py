"""A leader paused past its lease cannot write when it wakes up: the database fences it.

The leader is stopped with SIGSTOP until another node has taken the lease
and decided events the paused one never read; then it is resumed. Waking
up, the old leader still has those events in flight (its stream read was
answered while it slept) and decides them again from its stale desk: here,
it would give the same user a second conversation. Its writes carry its
old epoch, which the new leader's claim made stale, so the database
refuses them in their own transaction, and the old leader steps down.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from support.client import say

from .conftest import MakeCluster


async def test_a_leader_paused_past_its_lease_writes_nothing_when_it_wakes(
    make_cluster: MakeCluster,
) -> None:
    cluster = await make_cluster(2, lease_ttl=1.5, node_ttl=3, resume_grace=30)
    old = await cluster.leader()
    new = next(n for n in cluster.nodes if n is not old)
    waiter = await new.waiter()  # known to both desks: ready, with room
    assert waiter.person is not None
    (epoch_before,) = cluster.sql("SELECT epoch FROM leader_epoch WHERE id = 1")[0]
    assert old.proc is not None

    old.proc.send_signal(signal.SIGSTOP)
    try:
        await cluster.wait_for(
            lambda s: s.get("leader") == new.name, nodes=[new], timeout=20, what="a new leader"
        )
        user = await new.user()
        assert user.person is not None
        await user.send({"type": "connect"})
        await user.expect("connect_success", from_=waiter.uuid, timeout=10)
        # (a second `ready`: the new leader decides again what the old one had not acked)
        await waiter.expect("new_connection", from_=user.uuid, skip=("ready",))
    finally:
        with contextlib.suppress(ProcessLookupError):
            old.proc.send_signal(signal.SIGCONT)

    # the old leader wakes, decides what it had in flight, is refused, and steps down
    await cluster.wait_for(
        lambda s: s.get("leader") == new.name, nodes=[old, new], timeout=20, what="one leader"
    )
    for _ in range(100):
        if "stops leading" in old.stderr():
            break
        await asyncio.sleep(0.1)
    log = old.stderr()
    assert "stops leading" in log, log[-3000:]

    (epoch_after,) = cluster.sql("SELECT epoch FROM leader_epoch WHERE id = 1")[0]
    assert epoch_after > epoch_before  # the new leader claimed its token
    open_conversations = cluster.sql(
        "SELECT user_id, waiter_id FROM conversations WHERE closed_at IS NULL"
    )
    assert [tuple(r) for r in open_conversations] == [(user.person.id, waiter.person.id)]
    assert cluster.sql("SELECT user_id FROM queue_entries") == []
    # the desk goes on, led by the new leader
    await say(user, waiter, "after the pause")
    await say(waiter, user, "all fine")
    print(
        "\nold leader after SIGCONT:",
        "its writes were fenced" if "fenced" in log else "stepped down before writing",
    )
