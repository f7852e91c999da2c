"""What a node does with `ForgetAccount`, in process: its cache, its sockets, reads in flight.

The e2e tests (test_api_accounts, tests/cluster/test_admin_api) show the
result over real sockets; these pin the two races they cannot time: a
store read of an account that a change overtakes is done again, and a node
closes an account's sockets whose `auth` the desk has not seen yet.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from kefu.core.model import Role
from kefu.ids import IdGenerator
from kefu.server.accounts import Accounts
from kefu.server.connections import Connection
from kefu.server.node import Node
from kefu.server.orders import ForgetAccount
from kefu.settings import Settings
from kefu.store.base import Account, Store
from kefu.tokens import Claims, TokenError, issue, verify

SECRET = "a-test-secret-of-enough-length-0123456789"
ALICE = Account("a1", "alice", Role.WAITER)


class SlowStore:
    """A store whose account reads wait for `release`, then return what is stored then."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.release = asyncio.Event()
        self.reading = asyncio.Event()
        self.reads = 0

    async def get_account(self, account_id: str) -> Account | None:
        self.reads += 1
        self.reading.set()
        await self.release.wait()
        return self.account if account_id == self.account.id else None


def _claims(account: Account) -> Claims:
    return verify(SECRET, issue(SECRET, account, 60))


async def test_a_read_overtaken_by_a_change_is_done_again() -> None:
    store = SlowStore(ALICE)
    accounts = Accounts(cast(Store, store), SECRET, lambda: "new")
    loading = asyncio.create_task(accounts.load(_claims(ALICE)))
    await store.reading.wait()  # the read has started, before the change
    store.account = replace(ALICE, disabled_at=1.0)  # the API commits...
    accounts.forget(ALICE.id)  # ...and the node is told
    store.release.set()
    with pytest.raises(TokenError, match="disabled"):
        await loading
    assert store.reads == 2


async def test_a_read_not_overtaken_is_not_repeated() -> None:
    store = SlowStore(ALICE)
    store.release.set()
    accounts = Accounts(cast(Store, store), SECRET, lambda: "new")
    accounts.forget("someone-else")
    assert await accounts.load(_claims(ALICE)) == ALICE
    assert store.reads == 1
    assert accounts.known(_claims(ALICE)) == ALICE  # cached...
    accounts.forget(ALICE.id)
    assert accounts.known(_claims(ALICE)) is None  # ...until forgotten


class FakeConnection:
    def __init__(self, socket: str, account: Account) -> None:
        self.socket = socket
        self.account = account
        self.closed: int | None = None

    def close(self, code: int) -> None:
        self.closed = code


def test_a_node_closes_the_sockets_of_a_hung_up_account(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'kefu.db'}")
    node = Node(settings, cast(Any, None), IdGenerator())
    forgotten: list[str] = []
    node.on_forget = forgotten.append
    theirs = [FakeConnection("s1", ALICE), FakeConnection("s2", ALICE)]
    other = FakeConnection("s3", replace(ALICE, id="b2"))
    for conn in [*theirs, other]:
        node.connections.add(cast(Connection, conn))
        node.connections.bind(cast(Connection, conn))
    node.apply(ForgetAccount(ALICE.id))  # a change that keeps the sockets
    assert forgotten == [ALICE.id] and all(c.closed is None for c in theirs)
    node.apply(ForgetAccount(ALICE.id, hang_up=True))
    assert forgotten == [ALICE.id, ALICE.id]
    assert [c.closed for c in theirs] == [4403, 4403] and other.closed is None
