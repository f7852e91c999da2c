"""The admin API in a cluster: an account disabled on one node is refused on every node.

The API on any node hands `AccountChanged` to the leader's desk: it closes
the account's sockets wherever they are (4403) and has every node forget
its cached copy, so a token that worked a moment ago is refused everywhere,
and works again everywhere once the account is enabled.
"""

from __future__ import annotations

import asyncio
import time

from support.api import admin_token, api, create_key
from support.client import Person, pair, person

from .conftest import MakeCluster, Node

CLOSE_REVOKED = 4403
NOT_AUTHENTICATED = 999999


async def test_disabling_closes_the_sockets_on_every_node(make_cluster: MakeCluster) -> None:
    cluster = await make_cluster(3)
    customer = person("user")
    waiter = await cluster[1].waiter()
    user = await cluster[0].user(customer)
    await pair(user, waiter)
    tab = await cluster[2].user(customer)  # a second tab, on another node: it holds the chat
    await tab.expect("connect_success", from_=waiter.uuid)
    await waiter.expect("new_connection", from_=tab.uuid)
    # every node has the account cached now (it authenticated there)
    bystander = await cluster[0].user()

    async with api(cluster[1], admin_token()) as http:
        started = time.monotonic()
        resp = await http.patch(f"/accounts/{customer.id}", json={"disabled": True})
        assert resp.status_code == 200, resp.text
        await user.expect_closed(CLOSE_REVOKED)
        await tab.expect_closed(CLOSE_REVOKED)
        both_closed = time.monotonic() - started
        await waiter.expect("disconnected", from_=tab.uuid)
        print(f"sockets on two nodes closed {both_closed * 1000:.0f} ms after the PATCH")
        token = customer.token()
        for node in cluster.nodes:  # refused on every node, cached or not
            again = await node.open("user", f"n{node.index}:again")
            await again.send({"type": "auth", "payload": {"token": token}})
            await again.expect_error(NOT_AUTHENTICATED)
        await bystander.send({"type": "connect"})  # nobody else is concerned
        await bystander.expect("connect_success", from_=waiter.uuid)

    # enabled through another node: every node reads the account again, once the
    # leader's word reached it (a node that refused it above has it cached as disabled)
    async with api(cluster[2], create_key(cluster[2])) as http:
        resp = await http.patch(f"/accounts/{customer.id}", json={"disabled": False})
        assert resp.status_code == 200 and resp.json()["disabled"] is False, resp.text
    for node in cluster.nodes:
        await _signs_in_soon(node, customer)


async def _signs_in_soon(node: Node, who: Person, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        client = await node.open("user", f"n{node.index}:back")
        await client.send({"type": "auth", "payload": {"token": who.token()}})
        frame = await client.recv()
        if frame["type"] == "auth_success":
            return
        assert frame["payload"]["status"] == NOT_AUTHENTICATED, frame
        assert time.monotonic() < deadline, f"node {node.index} still refuses {who.id}"
        await client.close()
        await asyncio.sleep(0.05)
