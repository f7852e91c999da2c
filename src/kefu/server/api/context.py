"""What the admin API's routes work with: `Ctx` in a route's signature gives the `ApiContext`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from kefu.core.events import Event
from kefu.passwords import PasswordChecker
from kefu.server.accounts import Accounts
from kefu.server.live import LiveSource
from kefu.server.node import Node
from kefu.settings import Settings
from kefu.store.base import Store


@dataclass
class ApiContext:
    """The server's parts the API uses; one per app, made by `create_app`."""

    settings: Settings
    store: Store
    node: Node
    accounts: Accounts
    passwords: PasswordChecker
    clock: Callable[[], float] = field(default=time.time)
    key_uses: dict[str, float] = field(default_factory=dict)  # key id -> last written (monotonic)
    live: LiveSource | None = None  # the queue and the waiters (`server/live.py`)

    def new_id(self) -> str:
        """A fresh time-ordered id (`kefu.ids`), unique across the cluster's nodes."""
        return self.node.ids()

    def submit(self, event: Event) -> None:
        """Hand a lifecycle event to the desk (this node's, or the cluster leader's)."""
        self.node.submit(event, None)


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.kefu
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]
