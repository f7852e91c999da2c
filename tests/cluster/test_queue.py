"""One FIFO queue across the cluster, whichever node a user lands on."""

from __future__ import annotations

import asyncio
from typing import Any

from support.client import Client

from .conftest import MakeCluster


async def first_answer(user: Client) -> dict[str, Any]:
    frame = await user.recv(timeout=15)
    assert frame["type"] in ("connect_success", "connect_queue"), frame
    return frame


async def test_one_queue_for_100_users_on_3_nodes(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(3, max_users_per_waiter=5)
    w1 = await cluster[0].waiter()
    w2 = await cluster[1].waiter()
    users = await asyncio.gather(*(cluster[i % 3].user() for i in range(100)))
    await asyncio.gather(*(u.send({"type": "connect"}) for u in users))  # all at once
    answers = await asyncio.gather(*(first_answer(u) for u in users))

    served = [u for u, a in zip(users, answers, strict=True) if a["type"] == "connect_success"]
    queued = [
        (a["payload"]["location"], u)
        for u, a in zip(users, answers, strict=True)
        if a["type"] == "connect_queue"
    ]
    assert len(served) == 10
    assert sorted(place for place, _ in queued) == list(range(90))  # each place given once
    await asyncio.gather(*(u.expect_nothing(0.3) for u in users))  # nobody's place changed
    new: dict[str, list[str]] = {}
    for w in (w1, w2):
        assert w.uuid is not None
        new[w.uuid] = [(await w.expect("new_connection"))["from"] for _ in range(5)]
        await w.expect_nothing(0.3)  # never over capacity
    assert sorted(new[w1.uuid] + new[w2.uuid]) == sorted(str(u.uuid) for u in served)  # type: ignore[index]
    status = await cluster.wait_for(lambda s: s["pending_num"] == 90, what="90 pending")
    assert sorted(len(v) for v in status["matchers"].values()) == [5, 5]

    # first come, first served: a freed place goes to place 0, everyone moves up
    by_place = [u for _, u in sorted(queued, key=lambda pu: pu[0])]
    await w1.send({"type": "disconnect", "payload": {"uuid": new[str(w1.uuid)][0]}})
    ok = await by_place[0].expect("connect_success", from_=w1.uuid)
    assert ok["payload"]["uuid"] == w1.uuid
    moved = await asyncio.gather(*(u.expect("connect_queue") for u in by_place[1:]))
    assert [m["payload"]["location"] for m in moved] == list(range(89))
